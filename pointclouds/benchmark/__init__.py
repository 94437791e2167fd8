"""A scene-flow benchmark that one generator cannot tune: streets, rooms and a real depth map, seen by
lidar rings, depth-camera grids or uniform samples, in several frame conventions (:mod:`.scenes`).

>>> from pointclouds.benchmark import benchmark_set, make_benchmark_scene
>>> sample = make_benchmark_scene(benchmark_set("tuning")[0])   # doctest: +SKIP
"""
from .scenes import (
    CONVENTIONS,
    GEOMETRIES,
    MOTIONS,
    REPORTING_SET,
    SENSORS,
    TUNING_SET,
    SceneSpec,
    benchmark_set,
    make_benchmark_scene,
)

__all__ = ["SceneSpec", "make_benchmark_scene", "benchmark_set", "TUNING_SET", "REPORTING_SET", "GEOMETRIES",
           "MOTIONS", "SENSORS", "CONVENTIONS"]
