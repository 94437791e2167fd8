"""Model cards of the flow methods (:class:`motion4d.cards.ModelCard`), one per registration.

Each model module passes its card to :func:`motion.register`; the named weight sets that
``motion.create(name, weights=...)`` downloads (ptlflow's converted release assets) and their
aliases are read from the cards' :class:`~motion4d.cards.WeightCard` entries.

Sources, read for these cards (commits of the stored snapshots):

* official repositories: XiaoyuShi97/VideoFlow @ 5148930, wwsource/SplatFlow @ 41c53ff,
  littlespray/StreamFlow @ 6d8713d, tikroeger/OF_DIS @ 2c9f2a6, wish44165/ReynoldsFlow @ 670be01;
* hmorimitsu/ptlflow @ e9cf9bc: model classes (``pretrained_checkpoints``, constructor defaults),
  per-model README licence notes, ``docs/source/models/checkpoint_list.csv`` and
  ``docs/source/results/paper_results_things.csv`` (the papers' (C+)T numbers as ptlflow records them);
* the project's research notes (``research/optical_flow.md``, ``research/reynolds.md``), which
  quote the StreamFlow paper's tables (read in full) and the VideoFlow / SplatFlow abstracts.

Numbers the sources could not confirm are recorded as ``unverified`` (value None).
"""
from __future__ import annotations

from motion4d.cards import NONE_STATED, NOT_APPLICABLE, Licence, ModelCard, Reported, Setting, Speed, WeightCard

PTLFLOW = "hmorimitsu/ptlflow @ e9cf9bc"
PTLFLOW_RELEASE = "github.com/hmorimitsu/ptlflow/releases/tag/weights1"
PAPER_THINGS_CSV = f"{PTLFLOW} docs/source/results/paper_results_things.csv"
STREAMFLOW_TABLE1 = "StreamFlow paper (NeurIPS 2024) Table 1, via research/optical_flow.md"
MOTION4D_LICENCE = Licence("Apache-2.0", "motion4d setup.py license field")
OPENCV_LICENCE = Licence("Apache-2.0", "opencv-python-headless 5.1.0.95 LICENSE-3RD-PARTY.txt (OpenCV >= 4.5)")
NO_WEIGHTS = Licence(NOT_APPLICABLE, "the method has no learned weights")
SPEED_RUN = ("bench/model_cards.py, 2026-12-06 13:00, torch 2.13 CPU, 2 threads on a 2-core VM shared with other "
             "jobs (1-min load average 7.5 at the start, 4.7 midway, 3.4 at the end): compare ratios, not absolutes")
FLOW_CLIP = "6 frames 256x448 through model.stream, defaults"


def _train_split(benchmark: str, subset: str, metric: str, value: float, unit: str, source: str, note: str = "") -> Reported:
    split = "training"
    return Reported(benchmark, split, subset, metric, value, unit, source, note)


def _things_stage(clean: float, final: float, kitti_epe: float, kitti_fl: float, source: str,
                  note: str = "") -> tuple[Reported, ...]:
    """The (C+)T generalisation numbers: Things-trained weights on the Sintel / KITTI-2015 training sets."""
    return (
        _train_split("sintel", "clean", "EPE", clean, "px", source, note),
        _train_split("sintel", "final", "EPE", final, "px", source, note),
        _train_split("kitti", "all", "EPE", kitti_epe, "px", source, note),
        _train_split("kitti", "all", "Fl-all", kitti_fl, "%", source, note),
    )


def _ptlflow_iterations(value: int, file: str) -> tuple[str, str]:
    return f"ptlflow 0.4.2: {value}", f"{PTLFLOW} ptlflow/models/{file} constructor default"


_IN_DOMAIN = "in-domain: these weights were fine-tuned on the Sintel and KITTI training sets"
_TEST_NOTE = ("test-split (leaderboard) number: motion4d evaluate scores the training splits, so it is shown "
              "for reference, not as a reproduction target")

# ------------------------------------------------------------------------------------ VideoFlow
_VIDEOFLOW_PAPER = ("Shi, Huang, Bian, Li, Zhang, Cheung, See, Qin, Dai, Li: VideoFlow: Exploiting Temporal Cues "
                    "for Multi-frame Optical Flow Estimation, ICCV 2023")
_VIDEOFLOW_CODE = Licence("Apache-2.0", "XiaoyuShi97/VideoFlow README.md @ 5148930 ('released under the Apache License')",
                          "no LICENSE file in the repository and no licence version named")
_VIDEOFLOW_WEIGHTS = Licence(NONE_STATED, "XiaoyuShi97/VideoFlow README.md @ 5148930 (Google Drive link, no terms); "
                             f"{PTLFLOW} ptlflow/models/videoflow/README.md ('Pretrained weights license: Not specified')")
_VIDEOFLOW_DRIVE = "Google Drive folder VideoFlow_ckpt linked in XiaoyuShi97/VideoFlow README.md @ 5148930"
_TSKH = ("FlyingThings3D, then the T+S+K+H mix (100x Sintel clean + 100x Sintel final + KITTI-2015 + 5x HD1K + "
         "Things clean)")
_VIDEOFLOW_SETTINGS = (
    Setting("iterations", "32 (iters=)", "32 (decoder_depth = 32)", "XiaoyuShi97/VideoFlow configs/sintel_submission.py, "
            "configs/multiframes_sintel_submission.py @ 5148930", *_ptlflow_iterations(32, "videoflow/videoflow_bof.py"),
            "12 in training (6 for MOF on Things): train_iters="),
    Setting("correlation", "all-pairs (corr_mode='all_pairs'; 'on_the_fly' gives the same numbers in O(hw) memory)",
            "all-pairs ('default'; 'efficient' needs the alt_cuda_corr CUDA extension)",
            "XiaoyuShi97/VideoFlow configs/*_submission.py corr_fn @ 5148930",
            "ptlflow 0.4.2: all-pairs (corr_fn='default')", f"{PTLFLOW} videoflow_bof.py constructor default"),
    Setting("mixed precision", "float16 autocast on CUDA only (mixed_precision='auto')",
            "autocast in the encoders and update block (CUDA)",
            "XiaoyuShi97/VideoFlow @ 5148930, torch.cuda.amp in the networks (research/optical_flow.md section 2.6)",
            "ptlflow 0.4.2: autocast removed (fp16 left to its scripts)", "research/optical_flow.md section 6.2"),
)

VIDEOFLOW_BOF_CARD = ModelCard(
    title="VideoFlow TROF (BOF): tri-frame bidirectional optical flow",
    task="optical flow",
    paper=_VIDEOFLOW_PAPER,
    paper_url="https://arxiv.org/abs/2303.08340",
    repository="https://github.com/XiaoyuShi97/VideoFlow (read @ 5148930)",
    implementation=("motion4d re-implementation keeping the official parameter names: official .pth and ptlflow "
                    ".ckpt files load strictly; outputs match the official code on the same weights "
                    "(tests/data/videoflow_official_outputs.npz)"),
    code_licence=_VIDEOFLOW_CODE,
    implementation_licence=MOTION4D_LICENCE,
    weights_licence=_VIDEOFLOW_WEIGHTS,
    weights=(
        WeightCard(
            "things", "FlyingThings3D at 288x960 crops with added noise (inferred from the file name; unverified)",
            "BOF_things_288960noise.pth",
            f"ptlflow's list of upstream files ({PTLFLOW} docs/source/models/checkpoint_list.csv); not in the "
            "VideoFlow README's list",
            asset="videoflow_bof-things_288960noise-d581490a.ckpt", aliases=("things_288960", "things_288960noise"),
            reported=_things_stage(1.03, 2.19, 3.96, 15.3, f"{STREAMFLOW_TABLE1}; {PAPER_THINGS_CSV}",
                                   "the paper's Things-stage (C+)T model; whether BOF_things.pth or this noise-trained "
                                   "file produced it is unverified"),
            note=("motion4d's 'things' for videoflow-bof is the noise-trained file BOF_things_288960noise.pth "
                  "(ptlflow's 'things_288960'), not BOF_things.pth from the VideoFlow README: ptlflow hosts no "
                  "converted BOF_things.pth; pass weights=PATH to use that file")),
        WeightCard(
            "sintel", _TSKH, "BOF_sintel.pth", _VIDEOFLOW_DRIVE, asset="videoflow_bof-sintel-c2010097.ckpt",
            reported=(
                Reported("sintel", "test", "clean", "EPE", 1.005, "px",
                         "MEMFOF comparison data (1.005) and StreamFlow paper Table 1 (1.00), via research/optical_flow.md",
                         _TEST_NOTE),
                Reported("sintel", "test", "final", "EPE", 1.713, "px",
                         "MEMFOF comparison data (1.713) and StreamFlow paper Table 1 (1.71), via research/optical_flow.md",
                         _TEST_NOTE),
                _train_split("sintel", "clean", "EPE", 0.37, "px", STREAMFLOW_TABLE1, _IN_DOMAIN),
                _train_split("sintel", "final", "EPE", 0.54, "px", STREAMFLOW_TABLE1, _IN_DOMAIN),
                _train_split("kitti", "all", "EPE", 0.52, "px", STREAMFLOW_TABLE1, _IN_DOMAIN),
                _train_split("kitti", "all", "Fl-all", 0.85, "%", STREAMFLOW_TABLE1, _IN_DOMAIN),
            )),
        WeightCard(
            "kitti", _TSKH + ", then KITTI-2015 (80k steps, no flips)", "BOF_kitti.pth", _VIDEOFLOW_DRIVE,
            asset="videoflow_bof-kitti-fa9af79c.ckpt",
            reported=(Reported("kitti", "test", "all", "Fl-all", 4.44, "%", STREAMFLOW_TABLE1, _TEST_NOTE),)),
    ),
    reported=(),
    reported_note=("Things-stage numbers are Sintel / KITTI-2015 training-set scores of the Things weights (what "
                   "motion4d evaluate reproduces); Sintel numbers are pooled EPE, KITTI EPE per image and Fl-all "
                   "pooled. The VideoFlow paper's own tables were not readable here: numbers come from the StreamFlow "
                   "paper's comparison table and ptlflow's record of the paper"),
    settings=_VIDEOFLOW_SETTINGS,
    speed=Speed(9.4, "flow", FLOW_CLIP, SPEED_RUN),
)

VIDEOFLOW_MOF_CARD = ModelCard(
    title="VideoFlow MOP (MOF): multi-frame optical flow with motion propagation",
    task="optical flow",
    paper=_VIDEOFLOW_PAPER,
    paper_url="https://arxiv.org/abs/2303.08340",
    repository="https://github.com/XiaoyuShi97/VideoFlow (read @ 5148930)",
    implementation=VIDEOFLOW_BOF_CARD.implementation,
    code_licence=_VIDEOFLOW_CODE,
    implementation_licence=MOTION4D_LICENCE,
    weights_licence=_VIDEOFLOW_WEIGHTS,
    weights=(
        WeightCard(
            "things", "FlyingThings3D (5-frame clips, 6 training iterations)", "MOF_things.pth", _VIDEOFLOW_DRIVE,
            asset="videoflow_mof-things-e24551af.ckpt",
            reported=_things_stage(1.18, 2.56, 3.89, 14.2, PAPER_THINGS_CSV,
                                   "ptlflow's record of the paper; not cross-checked against the paper's table")),
        WeightCard(
            "things_288960noise", "FlyingThings3D at 288x960 crops with added noise (inferred from the file name; "
            "unverified)", "MOF_things_288960noise.pth",
            f"ptlflow's list of upstream files ({PTLFLOW} docs/source/models/checkpoint_list.csv); not in the "
            "VideoFlow README's list",
            asset="videoflow_mof-things_288960noise-0615a42e.ckpt", aliases=("things_288960",),
            reported=(Reported("sintel", "training", "final", "EPE", None, "px", "VideoFlow README, ptlflow docs",
                               "unverified: no published number belongs to this file"),)),
        WeightCard(
            "sintel", "FlyingThings3D, then the T+S+K+H mix (100x Sintel clean + 100x Sintel final + 50x KITTI-2015 "
            "+ 5x HD1K + Things clean, 40k steps)", "MOF_sintel.pth", _VIDEOFLOW_DRIVE,
            asset="videoflow_mof-sintel-739e4d3a.ckpt",
            reported=(
                Reported("sintel", "test", "clean", "EPE", 0.991, "px", "VideoFlow abstract (arXiv 2303.08340)", _TEST_NOTE),
                Reported("sintel", "test", "final", "EPE", 1.649, "px", "VideoFlow abstract (arXiv 2303.08340)", _TEST_NOTE),
            )),
        WeightCard(
            "kitti", "the sintel stage, then KITTI-2015 centre clips", "MOF_kitti.pth", _VIDEOFLOW_DRIVE,
            asset="videoflow_mof-kitti-293b4f59.ckpt",
            reported=(Reported("kitti", "test", "all", "Fl-all", 3.65, "%", "VideoFlow abstract (arXiv 2303.08340)",
                               _TEST_NOTE),)),
    ),
    reported=(),
    reported_note=VIDEOFLOW_BOF_CARD.reported_note + "; MOF's test numbers are the abstract's",
    settings=_VIDEOFLOW_SETTINGS + (
        Setting("frames per window", "5, first frame repeated, stride 3 (window=)", "5-frame clips, stride 3",
                "XiaoyuShi97/VideoFlow evaluate_MOFNet.py @ 5148930",
                "ptlflow 0.4.2: scores only the middle interior frame; infer.py feeds pairs",
                "research/optical_flow.md section 6.2"),
    ),
    speed=Speed(16.7, "flow", FLOW_CLIP, SPEED_RUN),
)

# ------------------------------------------------------------------------------------ SplatFlow
SPLATFLOW_CARD = ModelCard(
    title="SplatFlow: multi-frame optical flow via splatting",
    task="optical flow",
    paper=("Wang, Zhang, Li, Yu, Sun, Liu, Hu: SplatFlow: Learning Multi-frame Optical Flow via Splatting, "
           "IJCV 2024"),
    paper_url="https://arxiv.org/abs/2306.08887",
    repository="https://github.com/wwsource/SplatFlow (read @ 41c53ff)",
    implementation=("motion4d re-implementation (GMA backbone + splatted motion feature; softsplat without cupy); "
                    "outputs match the official code on the same weights (tests/data/splatflow_official_outputs.npz)"),
    code_licence=Licence("MIT", "wwsource/SplatFlow LICENSE @ 41c53ff"),
    implementation_licence=MOTION4D_LICENCE,
    weights_licence=Licence(NONE_STATED, "wwsource/SplatFlow README.md @ 41c53ff (Hugging Face / Baidu links, no "
                            f"terms); {PTLFLOW} ptlflow/models/splatflow/README.md ('Not specified')"),
    weights=(
        WeightCard(
            "kitti", "GMA Things weights, then Things (temporal branch, then all), the Sintel mix, and the KITTI mix "
            "(20x Sintel clean + 420x KITTI-2015 + 10x HD1K + Things clean, 50k steps)", "splatflow_kitti_50k.pth",
            "huggingface.co/wwcreator/SplatFlow (wwsource/SplatFlow README.md @ 41c53ff; ptlflow records the upstream "
            "name kitti.pth)", asset="splatflow-kitti-2aa8e145.ckpt",
            reported=(Reported("kitti", "test", "all", "Fl-all", 4.61, "%", STREAMFLOW_TABLE1, _TEST_NOTE),)),
    ),
    reported=(
        *_things_stage(1.22, 2.97, 3.70, 15.3, STREAMFLOW_TABLE1,
                       "the paper's (C+)T model, whose weights are not released"),
        Reported("kitti", "training", "all", "Fl-all", 14.9, "%", PAPER_THINGS_CSV,
                 "ptlflow's record of the same (C+)T number disagrees with StreamFlow Table 1 (15.3); the SplatFlow "
                 "paper's table was not readable here"),
        Reported("sintel", "test", "clean", "EPE", 1.12, "px", "SplatFlow abstract (arXiv 2306.08887)",
                 "Sintel-finetuned model, not released"),
        Reported("sintel", "test", "final", "EPE", 2.07, "px", "SplatFlow abstract (arXiv 2306.08887)",
                 "Sintel-finetuned model, not released"),
    ),
    reported_note=("only the KITTI weights are public, so the Sintel and (C+)T numbers cannot be reproduced with "
                   "released weights; ptlflow's own KITTI score of these weights (about 46% Fl) comes from running "
                   "them on two frames, without the multi-view neighbours the official protocol uses"),
    settings=(
        Setting("iterations", "24 (iters=)", "24", "wwsource/SplatFlow run_test.py, run_demo.py @ 41c53ff",
                *_ptlflow_iterations(32, "splatflow/splatflow.py"),
                "the same weights give different flow in motion4d and ptlflow; loading ptlflow's .ckpt warns "
                "(CheckpointSettingsWarning), config_from_checkpoint=True or iters=32 gives ptlflow's setting"),
        Setting("KITTI frames", "_09, _10, _11 of the multi-view extension (evaluate's kitti protocol)",
                "_09, _10, _11 (image_2_multiview)", "wwsource/SplatFlow run_test.py @ 41c53ff",
                "ptlflow 0.4.2: frames _10, _11 only (two-frame mode)", "research/optical_flow.md section 3.7"),
    ),
    speed=Speed(6.34, "flow", FLOW_CLIP, SPEED_RUN),
)

# ----------------------------------------------------------------------------------- StreamFlow
_STREAMFLOW_DRIVE = "Google Drive folder linked in littlespray/StreamFlow README.md @ 6d8713d"
STREAMFLOW_CARD = ModelCard(
    title="StreamFlow: streamlined multi-frame optical flow for video sequences",
    task="optical flow",
    paper=("Sun, Liu, Li, Li, Liu, Gao: StreamFlow: Streamlined Multi-Frame Optical Flow Estimation for Video "
           "Sequences, NeurIPS 2024"),
    paper_url="https://arxiv.org/abs/2311.17099",
    repository="https://github.com/littlespray/StreamFlow (read @ 6d8713d)",
    implementation=("motion4d re-implementation (Twins ISC encoder, GTR decoder, groups of T=4); outputs match the "
                    "official code on the same weights (tests/data/streamflow_official_outputs.npz)"),
    code_licence=Licence("MIT", "littlespray/StreamFlow LICENSE @ 6d8713d"),
    implementation_licence=MOTION4D_LICENCE,
    weights_licence=Licence(NONE_STATED, f"littlespray/StreamFlow README.md @ 6d8713d (no terms); {PTLFLOW} "
                            "ptlflow/models/streamflow/README.md ('Not specified')"),
    weights=(
        WeightCard("things", "FlyingThings3D (T=4 groups; the published Things script uses T=3: unverified which "
                   "produced the file)", "streamflow-things.pth", _STREAMFLOW_DRIVE,
                   asset="streamflow-things-c640255a.ckpt",
                   reported=_things_stage(0.87, 2.11, 3.85, 12.6, f"{STREAMFLOW_TABLE1}; {PAPER_THINGS_CSV}")),
        WeightCard("sintel", _TSKH + " (180k steps)", "streamflow-sintel.pth", _STREAMFLOW_DRIVE,
                   asset="streamflow-sintel-af557e5e.ckpt",
                   reported=(
                       Reported("sintel", "test", "clean", "EPE", 1.04, "px", STREAMFLOW_TABLE1 + " and Table 8", _TEST_NOTE),
                       Reported("sintel", "test", "final", "EPE", 1.87, "px", STREAMFLOW_TABLE1 + " and Table 8", _TEST_NOTE),
                       _train_split("sintel", "clean", "EPE", 0.28, "px", STREAMFLOW_TABLE1, _IN_DOMAIN),
                       _train_split("sintel", "final", "EPE", 0.38, "px", STREAMFLOW_TABLE1, _IN_DOMAIN),
                       _train_split("kitti", "all", "EPE", 0.47, "px", STREAMFLOW_TABLE1, _IN_DOMAIN),
                       _train_split("kitti", "all", "Fl-all", 0.77, "%", STREAMFLOW_TABLE1, _IN_DOMAIN),
                       Reported("spring", "test", "all", "1px", 5.22, "%", "StreamFlow paper, Spring table (zero-shot), "
                                "via research/optical_flow.md", "zero-shot from T+S+K+H; also EPE 0.61, Fl 1.86, WAUC 93.25"),
                   )),
        WeightCard("kitti", "the sintel stage, then KITTI-2015 (no training script published)", "streamflow-kitti.pth",
                   _STREAMFLOW_DRIVE, asset="streamflow-kitti-eaafa6ed.ckpt",
                   reported=(Reported("kitti", "test", "all", "Fl-all", 4.24, "%", STREAMFLOW_TABLE1, _TEST_NOTE),)),
        WeightCard("spring", "the sintel stage, then Spring (180k steps)", "streamflow-spring.pth", _STREAMFLOW_DRIVE,
                   asset="streamflow-spring-092f8a17.ckpt",
                   reported=(Reported("spring", "test", "all", "1px", 4.15, "%", "StreamFlow paper, Spring table, via "
                                      "research/optical_flow.md", "fine-tuned; also EPE 0.47, Fl 1.42, WAUC 94.40"),)),
    ),
    reported=(),
    reported_note=("the StreamFlow paper was read in full (research/optical_flow.md section 4.7); (C+)T numbers are "
                   "training-set scores of the Things weights with groups of 4 frames"),
    settings=(
        Setting("iterations", "15 (iters=)", "15 (validation; 20 for test submissions)",
                "littlespray/StreamFlow scripts/infer.sh, scripts/submit.sh @ 6d8713d",
                *_ptlflow_iterations(15, "streamflow/streamflow.py")),
        Setting("group size T", "4, read from the weights (group_size=)", "4", "littlespray/StreamFlow scripts/infer.sh "
                "@ 6d8713d", "ptlflow 0.4.2: 4 (T)", f"{PTLFLOW} ptlflow/models/streamflow/streamflow.py",
                "fixed by the weights: the joint flow head regresses T-1 flows"),
    ),
    speed=Speed(6.11, "flow", FLOW_CLIP, SPEED_RUN),
)

# ------------------------------------------------------------------------------- classical: DIS
_DIS_CODE = Licence("GPL-3.0-or-later", "tikroeger/OF_DIS LICENSE and README.md @ 2c9f2a6",
                    "the README also says the code is released only for scientific or personal use and asks to be "
                    "contacted for commercial use; motion4d runs OpenCV's independent implementation instead")
_DIS_REPORTED = (Reported("sintel", "test", "final", "EPE", None, "px", "Kroeger et al., ECCV 2016",
                          "unverified: the paper's Sintel table was not readable here"),)
_DIS_NOTE = ("the paper reports Sintel / KITTI accuracy per operating point; those tables were not readable here. "
             "OpenCV's presets are not the paper's operating points")


#: seconds per flow of each preset (bench/model_cards.py, see SPEED_RUN)
_DIS_SECONDS = {"ultrafast": 0.00234, "fast": 0.00453, "medium": 0.0173}


def _dis_card(preset: str, default_note: str) -> ModelCard:
    return ModelCard(
        title=f"DIS (Dense Inverse Search), OpenCV {preset} preset",
        task="optical flow",
        paper="Kroeger, Timofte, Dai, Van Gool: Fast Optical Flow using Dense Inverse Search, ECCV 2016",
        paper_url="https://arxiv.org/abs/1603.03590",
        repository="https://github.com/tikroeger/OF_DIS (read @ 2c9f2a6)",
        implementation="OpenCV cv2.DISOpticalFlow (opencv-python-headless 5.1) on grey uint8 frames",
        code_licence=_DIS_CODE,
        implementation_licence=OPENCV_LICENCE,
        weights_licence=NO_WEIGHTS,
        weights=(),
        reported=_DIS_REPORTED,
        reported_note=_DIS_NOTE,
        settings=(
            Setting("preset", f"{preset}{default_note}", "operating point 2 of the paper (the run_*_* default)",
                    "tikroeger/OF_DIS README.md @ 2c9f2a6", "OpenCV 5.1 default: fast",
                    "cv2.DISOpticalFlow_create() getters (patch stride 4, finest scale 2, 16 iterations = PRESET_FAST)",
                    "OpenCV's presets are not the paper's operating points"),
        ),
        speed=Speed(_DIS_SECONDS[preset], "flow", FLOW_CLIP, SPEED_RUN),
    )


DIS_CARD = _dis_card("medium", " (preset=)")
DIS_PRESET_CARDS = {p: _dis_card(p, "") for p in ("ultrafast", "fast", "medium")}

FARNEBACK_CARD = ModelCard(
    title="Farneback polynomial-expansion optical flow",
    task="optical flow",
    paper="Farneback: Two-Frame Motion Estimation Based on Polynomial Expansion, SCIA 2003",
    paper_url="https://doi.org/10.1007/3-540-45103-X_50",
    repository="none: no author code; OpenCV's calcOpticalFlowFarneback is the implementation in common use",
    implementation="OpenCV cv2.calcOpticalFlowFarneback (opencv-python-headless 5.1) on grey uint8 frames",
    code_licence=Licence(NOT_APPLICABLE, "no official repository"),
    implementation_licence=OPENCV_LICENCE,
    weights_licence=NO_WEIGHTS,
    weights=(),
    reported=(
        Reported("yosemite", "all", "all", "average angular error", 1.40, "deg",
                 "a review of the paper (excerpt found through the search index: huggingface.co/datasets/nvidia/"
                 "Nemotron-CC-Math-v1); the paper itself was not read",
                 "secondary source; the author page (ida.liu.se) confirms only that the evaluation is on Yosemite"),
    ),
    reported_note=("no Sintel / KITTI numbers: the paper (2003) predates both benchmarks"),
    settings=(
        Setting("parameters", "levels 3, winsize 15, 3 iterations (FarnebackFlow options; pyr_scale 0.5, poly_n 5, "
                "poly_sigma 1.2)", "none (no official code)", "no official repository",
                "OpenCV 5.1 create(): levels 5, winsize 13, 10 iterations",
                "cv2.FarnebackOpticalFlow_create() getters (also poly_n 5, poly_sigma 1.1, pyr_scale 0.5)",
                "ours are the OpenCV tutorial's arguments, the most common choice in published code"),
    ),
    speed=Speed(0.0298, "flow", FLOW_CLIP, SPEED_RUN),
)

REYNOLDS_CARD = ModelCard(
    title="ReynoldsFlow: flow from the Reynolds transport theorem (motion4d reconstruction)",
    task="optical flow",
    paper=("Chen, Wu: ReynoldsFlow: Exquisite Flow Estimation via Reynolds Transport Theorem, arXiv 2503.04500 "
           "(2025)"),
    paper_url="https://arxiv.org/abs/2503.04500",
    repository="https://github.com/wish44165/ReynoldsFlow (read @ 670be01: a README, no code)",
    implementation=("motion4d reconstruction from the paper's verified statements (normal flow v_o plus an "
                    "irrotational v_r from the continuity equation, DCT Poisson solver); not the authors' code"),
    code_licence=Licence(NONE_STATED, "wish44165/ReynoldsFlow @ 670be01: README only, no LICENSE file"),
    implementation_licence=MOTION4D_LICENCE,
    weights_licence=NO_WEIGHTS,
    weights=(),
    reported=(
        Reported("uavdb", "test", "all", "AP", None, "none", "Chen & Wu, arXiv 2503.04500",
                 "unverified: the paper body (UAVDB, Anti-UAV, GolfDB tables) was not readable here "
                 "(research/reynolds.md section 0)"),
    ),
    reported_note=("the paper evaluates detectors trained on the RGB encoding (UAVDB, Anti-UAV, GolfDB), not flow "
                   "accuracy; reynolds is a motion feature, not a displacement estimate"),
    settings=(
        Setting("solver", "DCT Poisson (reynolds_flow options: sigma 1.0, eps 1e-3, local lighting window 31)",
                "unpublished (no code)", "wish44165/ReynoldsFlow @ 670be01", "not in ptlflow",
                "no peer implementation found (research/reynolds.md section 1.1)"),
    ),
    speed=Speed(0.00479, "flow", FLOW_CLIP, SPEED_RUN),
)

TINY_FLOW_CARD = ModelCard(
    title="tiny-flow: a few-layer convolutional flow regressor for smoke tests",
    task="optical flow",
    paper="none: motion4d's own test network",
    paper_url="none: no paper",
    repository="motion4d (motion/models/tiny.py)",
    implementation="motion4d (motion/models/tiny.py)",
    code_licence=MOTION4D_LICENCE,
    implementation_licence=MOTION4D_LICENCE,
    weights_licence=Licence(NOT_APPLICABLE, "no published weights: train with motion4d train"),
    weights=(),
    reported=(),
    reported_note="none: a smoke-test network for the training tools, not meant to be accurate",
    settings=(
        Setting("width", "16 channels (width=)", "none (motion4d's own network)", "motion/models/tiny.py",
                "not in ptlflow", "motion4d's own network"),
    ),
    speed=Speed(0.0654, "flow", FLOW_CLIP, SPEED_RUN),
)
