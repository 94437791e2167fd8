"""Flow, encodings or tracks for every video of a corpus, sharded and resumable (behind ``motion4d corpus``).

The input is a folder (its video files and its folders of images, found recursively) or a text
file listing videos / image folders, one per line. Each video is one unit of work, handed to the
same code as ``motion4d flow`` / ``encode`` / ``track`` with that subcommand's options (e.g.
``["--model", "dis", "--format", "flo,mp4"]``), writing to ``OUT/<video id>/``. The videos are
sorted and dealt round-robin to ``num_shards`` shards; ``shard_index`` / ``num_shards`` default to
torchrun's ``RANK`` / ``WORLD_SIZE`` or Slurm's array / task ids, so ``torchrun --nproc_per_node=8
-m motion4d corpus ...`` or an ``sbatch --array=0-63`` job splits the corpus without overlap (on
GPUs each process uses ``cuda:LOCAL_RANK`` unless a device is given).

Idempotent: a finished video has ``OUT/<id>/.done.json`` (written last, atomically) and is skipped
on a rerun; a video that fails (corrupt file, ...) is recorded as failed in the manifest and the run
goes on (it is retried on the next run). The manifest is one JSON line per attempt in
``OUT/manifest/shard-IIIII-of-NNNNN.jsonl`` plus a summary per shard; :func:`read_manifest` merges
all shards. ``engine="ray"`` hands the pending videos to a Ray Data pool of (GPU) workers instead
of this process (needs ``pip install "ray[data]"``).
"""
from __future__ import annotations

from .listing import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, Video, list_corpus
from .manifest import append_manifest, manifest_path, read_manifest
from .runner import ENGINES, CorpusReport, run_corpus
from .tasks import (
    DONE_NAME,
    TASKS,
    is_done,
    parse_task_args,
    process_video,
    task_argv,
    task_output,
)

__all__ = [
    "DONE_NAME",
    "ENGINES",
    "IMAGE_EXTENSIONS",
    "TASKS",
    "VIDEO_EXTENSIONS",
    "CorpusReport",
    "Video",
    "append_manifest",
    "is_done",
    "list_corpus",
    "manifest_path",
    "parse_task_args",
    "process_video",
    "read_manifest",
    "run_corpus",
    "task_argv",
    "task_output",
]
