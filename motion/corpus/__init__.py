"""Flow, encodings or tracks for every video of a corpus, sharded and resumable (behind ``motion4d corpus``).

The input is a folder (its video files and its folders of images, found recursively) or a text
file listing videos / image folders, one per line. It is frozen once into ``OUT/corpus.jsonl``
(sorted, resolved paths, sizes; :mod:`motion.corpus.frozen`): every shard of the job and every
rerun reads that list, so videos added mid-job do not shift the assignment and a rerun from another
folder finds the same videos. Each video is one unit of work, handed to the same code as ``motion4d
flow`` / ``encode`` / ``track`` with that subcommand's options (e.g. ``["--model", "dis",
"--format", "flo,mp4"]``), writing to ``OUT/<video id>/``; a :class:`CorpusWorker` builds the model
once per process (or Ray actor).

Shards: the list is dealt round-robin to ``num_shards`` shards; ``shard_index`` / ``num_shards``
default to what torchrun, ``srun`` and Slurm arrays say, composed (:mod:`motion.launch` has the
table), so ``torchrun --nproc_per_node=8 -m motion4d corpus ...``, ``srun -n 8 motion4d corpus
...`` or an ``sbatch --array=0-63`` job split the corpus without overlap (on GPUs each process uses
``cuda:LOCAL_RANK`` unless a device is given).

Outcomes per video: ``done`` (``OUT/<id>/.done.json``, written last; skipped on reruns),
``damaged`` (the reader raised :class:`~motion4d.errors.DamagedFileError`: truncated or corrupt;
skipped on reruns until the file changes) or ``failed`` (retried on the next run). A failure never
stops the shard or makes it exit non-zero (``motion4d corpus --strict`` does), so torchrun and
Slurm never kill healthy ranks for a bad video. The manifest is one JSON line per attempt in
``OUT/manifest/shard-IIIII-of-NNNNN.jsonl``, keyed by resolved path, plus a summary per shard
rewritten after each video; :func:`read_manifest` merges all shards.

``engine="ray"`` maps the pending videos over a Ray Data actor pool instead of this process
(:mod:`motion.corpus.ray_engine`; needs ``pip install "ray[data]"``).
"""
from __future__ import annotations

from .frozen import LIST_NAME, FrozenCorpus, freeze_corpus, read_frozen
from .listing import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, Video, list_corpus
from .manifest import append_manifest, manifest_path, read_manifest, summary_path
from .runner import ENGINES, CorpusReport, resolve_shard, run_corpus
from .tasks import (
    DAMAGED_NAME,
    DONE_NAME,
    STATUSES,
    TASKS,
    CorpusWorker,
    is_done,
    parse_task_args,
    process_video,
    task_argv,
    task_output,
)

__all__ = [
    "DAMAGED_NAME",
    "DONE_NAME",
    "ENGINES",
    "IMAGE_EXTENSIONS",
    "LIST_NAME",
    "STATUSES",
    "TASKS",
    "VIDEO_EXTENSIONS",
    "CorpusReport",
    "CorpusWorker",
    "FrozenCorpus",
    "Video",
    "append_manifest",
    "freeze_corpus",
    "is_done",
    "list_corpus",
    "manifest_path",
    "parse_task_args",
    "process_video",
    "read_frozen",
    "read_manifest",
    "resolve_shard",
    "run_corpus",
    "summary_path",
    "task_argv",
    "task_output",
]
