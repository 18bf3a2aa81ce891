"""``--video-every N`` / ``video_every=N``: the first episode of every N-th evaluation recorded into the run
directory while training, kept across a resume, refused early where it cannot work."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from pathwise.cli import main
from pathwise.train import open_run, train

TINY = {"hidden": (8,), "num_envs": 2, "value_hidden": (8,), "value_steps": 1}


def _frames(path) -> int:
    with Image.open(path) as gif:
        return gif.n_frames


def test_every_nth_evaluation_is_recorded_and_the_setting_survives_a_resume(tmp_path):
    out = tmp_path / "run"
    trainer, summary = train("reinforce", "CartPole-v1", 300, overrides=TINY, out=out, eval_every=60,
                             eval_episodes=1, quiet=True, video_every=2)
    steps = [e["env_steps"] for e in trainer.evals]
    assert len(steps) >= 3
    videos = sorted(p.name for p in (out / "videos").iterdir())
    assert videos == [f"eval_{s:09d}.gif" for s in steps[::2]]  # evaluations 1, 3, ...
    lengths = {e["env_steps"]: e["eval_length_mean"] for e in trainer.evals}
    first = out / "videos" / videos[0]
    assert _frames(first) == int(lengths[steps[0]]) + 1  # the reset's frame, then one per step of the episode
    assert json.loads((out / "config.json").read_text())["video_every"] == 2
    resumed = open_run(out, quiet=True)
    assert resumed.video_every == 2


def test_videos_need_a_run_directory_and_a_count(tmp_path, capsys):
    with pytest.raises(ValueError, match="video_every records evaluation episodes into the run directory"):
        train("reinforce", "CartPole-v1", 20, overrides=TINY, quiet=True, video_every=1)
    assert main(["train", "reinforce", "--env", "CartPole-v1", "--out", str(tmp_path / "r"), "--video-every", "0",
                 "--quiet"]) == 2
    assert "--video-every 0: must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_an_environment_without_frames_is_refused_before_training(tmp_path, monkeypatch):
    import pathwise.render as render

    def no_frames(env_id):
        raise ValueError(f"{env_id} cannot be rendered (test); videos need an environment with "
                         "render_mode='rgb_array'.")

    monkeypatch.setattr(render, "check_renderable", no_frames)
    with pytest.raises(ValueError, match="cannot be rendered"):
        train("reinforce", "CartPole-v1", 20, overrides=TINY, out=tmp_path / "r", quiet=True, video_every=1)
    assert not (tmp_path / "r" / "checkpoints").exists()
