"""Does the straight-through Gumbel-softmax gradient of svg0-discrete point where the exact one does?

Trains ``svg0-discrete`` on CartPole-v1 with the straight-through Gumbel actor (``actor_gradient="gumbel"``, the
preset otherwise), and at every evaluation compares, on 1,024 replayed states and the critics of that moment, two
gradients of the actor's Q objective (the entropy term left out):

- straight-through: the mean over ``DRAWS`` Gumbel draws of ∇θ min_i Q_i(s, y), y the hard sample with the soft
  sample's gradient (``pathwise.algorithms.gumbel.actor_loss``);
- exact: ∇θ Σ_a π_θ(a|s) min_i Q_i(s, e_a) (``expected_actor_loss``), what the straight-through one estimates.

It prints, per evaluation, their cosine, their norms, the rate at which a descent step along each changes the
policy's entropy (dH per unit step size; > 0: the step makes the policy more random), the entropy, and the mean
|Q(s, e_0) − Q(s, e_1)|. A critic that is not linear in its one-hot input makes the straight-through mean differ
from the exact gradient; a negative cosine means a step that lowers the true objective.

    python benchmarks/ab_gumbel_gradient.py --seed 10
"""

from __future__ import annotations

import argparse
import json

STATES, DRAWS = 1024, 64


def comparison(state, buffer, key):
    """The two gradients on ``STATES`` replayed states, and what they do (see the module docstring)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from pathwise.algorithms import gumbel as gb
    from pathwise.algorithms.critics import sample

    obs, zero = sample(buffer, key, STATES).obs, jnp.float32(0.0)
    n = gb.num_actions(state.actor)

    def straight_through(k):
        noise = jax.random.gumbel(k, (STATES, n))
        return ravel_pytree(eqx.filter_grad(gb.actor_loss)(state.actor, state.critics, obs, noise, 1.0, True, zero))[0]

    st = jnp.mean(jax.vmap(straight_through)(jax.random.split(key, DRAWS)), 0)
    exact = ravel_pytree(eqx.filter_grad(gb.expected_actor_loss)(state.actor, state.critics, obs, zero))[0]
    entropy = lambda actor: jnp.mean(jax.vmap(lambda o: actor(o).entropy())(obs))  # noqa: E731
    grad_h = ravel_pytree(eqx.filter_grad(entropy)(state.actor))[0]
    q = gb.every_action_q(state.critics, obs, n)
    return {"cosine": st @ exact / (jnp.linalg.norm(st) * jnp.linalg.norm(exact)),
            "norm_straight_through": jnp.linalg.norm(st), "norm_exact": jnp.linalg.norm(exact),
            # a descent step -lr·g changes H by -lr·g·∇H
            "dH_straight_through": -st @ grad_h, "dH_exact": -exact @ grad_h,
            "entropy": entropy(state.actor), "q_gap": jnp.mean(jnp.abs(q[:, 0] - q[:, -1]))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's budget")
    args = parser.parse_args()
    import jax

    from pathwise.train import make_trainer

    trainer, steps = make_trainer("svg0-discrete", "CartPole-v1", args.seed, overrides={"actor_gradient": "gumbel"},
                                  steps=args.steps, quiet=True)
    measure = jax.jit(comparison)

    def at_evaluation(info: dict) -> None:
        if "eval_return_mean" in info:
            carry = trainer.run.carry
            row = measure(carry.algo, carry.buffer, jax.random.key(info["env_steps"]))
            print(json.dumps({"step": info["env_steps"], "eval_return": round(info["eval_return_mean"], 1),
                              **{k: round(float(v), 4) for k, v in row.items()}}), flush=True)

    trainer.train(steps, callback=at_evaluation)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
