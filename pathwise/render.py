"""Render one episode of a policy to a GIF, MP4 or a PNG strip of frames."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from pathwise.checkpoint import atomic_save_figure, atomic_write_bytes


def collect_frames(act: Callable[[np.ndarray], np.ndarray], env_id: str, seed: int = 0,
                   max_steps: int | None = None) -> tuple[list[np.ndarray], float]:
    """RGB frames of one seeded episode and its return."""
    frames, rewards = collect_episode(act, env_id, seed, max_steps)
    return frames, float(sum(rewards))


def _render_env(env_id: str):
    """``env_id`` made with ``render_mode="rgb_array"``, or an error naming the fix."""
    import gymnasium as gym

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    try:
        return gym.make(env_id, render_mode="rgb_array")
    except (gym.error.Error, TypeError, ValueError) as exc:
        raise ValueError(f"Cannot render {env_id!r} ({exc}). Render the Gymnasium id it reproduces instead "
                         "(e.g. Pendulum-v1 rather than pathwise/Pendulum-v1); videos need an environment with "
                         "render_mode='rgb_array'.") from None


def check_renderable(env_id: str) -> None:
    """Refuse, naming the fix, an environment that gives no RGB frames (before a run relies on them)."""
    _render_env(env_id).close()


def collect_episode(act: Callable[[np.ndarray], np.ndarray], env_id: str, seed: int = 0,
                    max_steps: int | None = None) -> tuple[list[np.ndarray], list[float]]:
    """RGB frames of one seeded episode (the reset's, then one per step) and each step's reward."""
    env = _render_env(env_id)
    obs, _ = env.reset(seed=seed)
    frames, rewards, t = [env.render()], [], 0
    while True:
        obs, reward, terminated, truncated, _ = env.step(act(obs))
        frames.append(env.render())
        rewards.append(float(reward))
        t += 1
        if terminated or truncated or (max_steps is not None and t >= max_steps):
            break
    env.close()
    if frames[0] is None:
        raise ValueError(f"{env_id} returned no frames in rgb_array mode; it cannot be rendered.")
    return frames, rewards


def render_episode(act: Callable[[np.ndarray], np.ndarray], env_id: str, path: str | os.PathLike,
                   seed: int = 0, fps: int = 30, max_steps: int | None = None) -> Path:
    """Write one episode to ``path`` (.gif, .mp4 or .png) atomically and return the path; every frame shows its
    step and the return so far (:func:`pathwise.plots.annotate_frames`). ``max_steps`` ends the episode early."""
    from pathwise.plots import annotate_frames

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4", ".png"):
        raise ValueError(f"--render {path}: use a .gif, .mp4 or .png file name.")
    raw, rewards = collect_episode(act, env_id, seed=seed, max_steps=max_steps)
    frames, total = annotate_frames(raw, rewards), float(sum(rewards))
    so_far = np.concatenate([[0.0], np.cumsum(rewards)])
    if suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(np.asarray(f)) for f in frames]
        buf = io.BytesIO()
        images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
        atomic_write_bytes(path, buf.getvalue())
    elif suffix == ".png":
        from matplotlib.figure import Figure

        picks = np.linspace(0, len(frames) - 1, num=min(8, len(frames))).astype(int)
        fig = Figure(figsize=(2 * len(picks), 2.2))  # not pyplot: the user's backend stays as it is
        axes = fig.subplots(1, len(picks))
        for ax, i in zip(np.atleast_1d(axes), picks):
            ax.imshow(raw[i])  # a strip's frames are small: the step and return go in the titles instead
            ax.set_title(f"step {i}, return {so_far[i]:.1f}", fontsize=8)
            ax.axis("off")
        fig.suptitle(f"{env_id}, seed {seed}, return {total:.1f}", fontsize=9)
        atomic_save_figure(fig, path)
    else:
        if shutil.which("ffmpeg") is None:
            raise ValueError("Writing .mp4 needs ffmpeg on PATH; install it or render to .gif instead.")
        from matplotlib import animation
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure()
        FigureCanvasAgg(fig)  # draws without pyplot or a backend switch
        ax = fig.subplots()
        ax.axis("off")
        im = ax.imshow(frames[0])
        anim = animation.FuncAnimation(fig, lambda i: [im.set_data(frames[i])], frames=len(frames))
        with tempfile.TemporaryDirectory(dir=path.parent if path.parent.exists() else None) as tmp:
            tmp_file = Path(tmp) / path.name
            anim.save(str(tmp_file), writer=animation.FFMpegWriter(fps=fps))
            atomic_write_bytes(path, tmp_file.read_bytes())
    return path
