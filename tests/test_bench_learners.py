"""benchmarks/bench_learners.py measures any version of pathwise through ``pathwise.train.train``: the solved line
it stops at comes from the registry of today's pathwise, or from ``pathwise.train.SOLVED_AT`` of one from before
the registry (the commit before the redesign, which issue 12's old-vs-new section runs)."""

import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_learners  # noqa: E402  (benchmarks/bench_learners.py)


def test_solved_line_of_todays_pathwise_is_the_registry_record():
    from pathwise import registry

    for env in ("Pendulum-v1", "pathwise/Pendulum-v1", "CartPole-v1"):
        assert bench_learners.solved_line(env) == registry.record(env).solved_at is not None


def test_solved_line_of_a_pathwise_before_the_registry_is_its_train_table(monkeypatch):
    old_train = types.ModuleType("pathwise.train")
    old_train.SOLVED_AT = {"Pendulum-v1": -123.0}
    monkeypatch.setitem(sys.modules, "pathwise.train", old_train)
    monkeypatch.setattr(sys.modules["pathwise"], "train", old_train, raising=False)
    assert bench_learners.solved_line("Pendulum-v1") == -123.0
