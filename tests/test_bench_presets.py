"""bench.presets: the measured crafting times it reads from sweep caches."""

import numpy as np

from bench import presets


def test_measured_crafting_counts_only_timed_batches_of_finished_kappas(tmp_path):
    np.savez(
        tmp_path / "kappa_5.npz",
        part_sizes=np.array([400, 600]),
        part_seconds=np.array([np.nan, 1200.0]),
        part_machines=np.array(["not recorded", "cpu box"]),
    )
    np.savez(tmp_path / "kappa_0.npz", success=np.ones(3))  # made before times were kept
    np.savez(tmp_path / "kappa_10.part_0.npz", seconds=5.0)  # an unfinished kappa
    rows = presets.measured_crafting(str(tmp_path))
    assert rows == [
        {
            "confidence": 5.0,
            "seconds": 1200.0,
            "cpu_seconds": None,
            "images_timed": 600,
            "images": 1000,
            "machines": ["cpu box"],
        }
    ]


def test_missing_throughput_file_gives_no_bound(tmp_path):
    assert presets.throughput(str(tmp_path / "none.json")) == {}


def test_cpu_time_is_summed_when_every_timed_batch_has_it(tmp_path):
    np.savez(
        tmp_path / "kappa_0.npz",
        part_sizes=np.array([500, 500]),
        part_seconds=np.array([2940.0, 1500.0]),
        part_cpu_seconds=np.array([2400.0, 2900.0]),
        part_machines=np.array(["cpu box", "cpu box"]),
    )
    (row,) = presets.measured_crafting(str(tmp_path))
    assert row["seconds"] == 4440.0 and row["cpu_seconds"] == 5300.0
