"""The preset format's ``extends``: a table builds on another table of the same file (pathwise/presets.py)."""

import pytest

from pathwise import presets

FILE = '''version = 1

["A-v0"]
gamma = 0.9
hidden = [8, 8]

["A-v0".run]
steps = 100
eval_every = 10

["B-v0"]
extends = "A-v0"
gamma = 0.99

["B-v0".run]
steps = 500

["C-v0"]
extends = "B-v0"
lr = 1e-3
'''


def test_a_table_takes_its_bases_values_and_run_settings_under_its_own(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(FILE)
    assert presets.load_file(path, "B-v0") == ({"gamma": 0.99, "hidden": [8, 8]}, {"steps": 500, "eval_every": 10})
    assert presets.load_file(path, "C-v0") == ({"gamma": 0.99, "hidden": [8, 8], "lr": 1e-3},
                                               {"steps": 500, "eval_every": 10})
    assert presets.load_file(path, "A-v0") == ({"gamma": 0.9, "hidden": [8, 8]}, {"steps": 100, "eval_every": 10})


@pytest.mark.parametrize("table,message", [
    ('["D-v0"]\nextends = "Z-v0"\n', r"extends = 'Z-v0', which is not a table of the same file; name one of"),
    ('["D-v0"]\nextends = "E-v0"\n["E-v0"]\nextends = "D-v0"\n', r"makes a cycle \(D-v0 -> E-v0 -> D-v0\)"),
    ('["D-v0"]\nextends = "D-v0"\n', r"makes a cycle \(D-v0 -> D-v0\)"),
])
def test_a_missing_base_or_a_cycle_is_refused_by_name(tmp_path, table, message):
    path = tmp_path / "p.toml"
    path.write_text(FILE + "\n" + table)
    with pytest.raises(ValueError, match=message):
        presets.load_file(path, "D-v0")


def test_shipped_tables_that_extend_another_resolve_to_its_values():
    """svgk's HalfCheetah-v5 table is Hopper-v5's recipe as it is; Hopper's is reacher-easy's with one key more."""
    hopper, hopper_run = presets.load("svgk", "Hopper-v5")
    cheetah, cheetah_run = presets.load("svgk", "HalfCheetah-v5")
    reacher, _ = presets.load("svgk", "dm_control/reacher-easy-v0")
    assert cheetah == hopper and cheetah_run == hopper_run == {"steps": 50000, "eval_every": 5000, "eval_episodes": 10}
    assert hopper == {**reacher, "min_steps_per_iteration": 1000} and "extends" not in hopper
