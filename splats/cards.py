"""Model cards of the 4D Gaussian methods (:class:`motion4d.cards.ModelCard`), one per registration.

Sources (commits of the stored snapshots): NJU-3DV/Gaussian-Flow @ 70c18e7, littlepure2333/GFlow @
83d5587, and the project's research note ``research/gaussians.md`` (GFlow's AAAI 2025 text was
read; Gaussian-Flow's result tables were not).
"""
from __future__ import annotations

from motion4d.cards import NONE_STATED, NOT_APPLICABLE, Licence, ModelCard, Reported, Setting, Speed

MOTION4D_LICENCE = Licence("Apache-2.0", "motion4d setup.py license field")
NO_WEIGHTS = Licence(NOT_APPLICABLE, "per-scene optimisation: no published network weights")
SPEED_RUN = ("bench/model_cards.py, 2026-12-06 13:07, torch 2.13 CPU (motion4d's PyTorch rasteriser), 2 threads on "
             "a 2-core VM shared with other jobs (1-min load average 3.4 before, 6.0 after): compare ratios, not "
             "absolutes")
_NO_PEER = ("not in ptlflow", "ptlflow covers optical flow only")

GAUSSIAN_FLOW_CARD = ModelCard(
    title="Gaussian-Flow: 4D reconstruction with dynamic 3D Gaussian particles (dual-domain deformation)",
    task="4D Gaussians",
    paper="Lin, Dai, Zhu, Yao: Gaussian-Flow: 4D Reconstruction with Dynamic 3D Gaussian Particle, CVPR 2024",
    paper_url="https://arxiv.org/abs/2312.03431",
    repository=("https://github.com/NJU-3DV/Gaussian-Flow (read @ 70c18e7, a Pointrix port; the paper's code is "
                "Linyou/D3DGS branch d3dgs_poly)"),
    implementation=("motion4d re-implementation from the paper (polynomial + Fourier deformation of position, "
                    "rotation and colour; time offsets; two-stage schedule with smoothness and rigidity terms)"),
    code_licence=Licence(NONE_STATED, "NJU-3DV/Gaussian-Flow @ 70c18e7: no LICENSE file, none in README.md",
                         "the paper's original code (Linyou/D3DGS) builds on the Inria 3DGS code and its "
                         "non-commercial licence (research/gaussians.md); motion4d copies neither"),
    implementation_licence=MOTION4D_LICENCE,
    weights_licence=NO_WEIGHTS,
    weights=(),
    reported=(
        Reported("dnerf", "test", "all", "PSNR", None, "dB", "Lin et al., CVPR 2024",
                 "unverified: the paper's D-NeRF / Neu3D tables were not readable here (research/gaussians.md 2.5)"),
        Reported("hypernerf", "test", "broom", "PSNR", 22.5, "dB",
                 "a third-party reproduction quoting the paper, via research/gaussians.md section 2.5",
                 "secondary source, not checked against the paper"),
        Reported("hypernerf", "test", "chicken", "PSNR", 29.4, "dB",
                 "a third-party reproduction quoting the paper, via research/gaussians.md section 2.5",
                 "secondary source, not checked against the paper"),
    ),
    reported_note=("verified from the abstract: training about 5x faster than per-frame 3DGS; motion4d runs on the "
                   "CPU rasteriser (gsplat on CUDA), so the paper's minutes and FPS are not comparable"),
    settings=(
        Setting("iterations", "3,000 (iterations=; 2 timestamps per step)", "10,000 (paper code configs; 30,000 "
                "in the Pointrix port's configs/dnerf.yaml; 8 timestamps per step)", "NJU-3DV/Gaussian-Flow configs/dnerf.yaml "
                "@ 70c18e7 (max_steps 30000); research/gaussians.md 2.4 for the paper code", *_NO_PEER,
                "a CPU-friendly default: raise iterations= for the paper's schedule"),
        Setting("deformation orders", "position 2+2, rotation 1+1, colour 1+0 (polynomial+Fourier)",
                "D-NeRF default 5 / 4 / 6 (paper code), Pointrix D-NeRF 3 / 3 / 2",
                "research/gaussians.md 2.1 (paper code and Pointrix configs)", *_NO_PEER),
    ),
    speed=Speed(0.177, "iteration", "2 views x 4 times at 64x64, defaults (100 timed iterations)", SPEED_RUN),
)

GFLOW_CARD = ModelCard(
    title="GFlow: recovering 4D world from monocular video",
    task="4D Gaussians",
    paper="Wang, Yang, Shen, Jiang, Wang: GFlow: Recovering 4D World from Monocular Video, AAAI 2025",
    paper_url="https://arxiv.org/abs/2405.18426",
    repository="https://github.com/littlepure2333/GFlow (read @ 83d5587)",
    implementation=("motion4d re-implementation from the paper (per-frame camera then Gaussian stages, epipolar "
                    "still/moving split, pixel-wise densification); depth from a training-free two-view prior "
                    "(default), files or a transformers depth model; flow from motion4d flow models"),
    code_licence=Licence(NONE_STATED, "littlepure2333/GFlow @ 83d5587: no LICENSE file, none in README.md",
                         "an older commit carried the Inria 3DGS licence (research/gaussians.md)"),
    implementation_licence=MOTION4D_LICENCE,
    weights_licence=NO_WEIGHTS,
    weights=(),
    reported=(
        Reported("davis2017", "val", "30 videos", "PSNR", 29.74, "dB", "GFlow AAAI 2025 / arXiv v2 reconstruction "
                 "table, via research/gaussians.md section 1.8", "reconstruction of the input frames; SSIM 0.9205, "
                 "LPIPS 0.1237; MASt3R depth and UniMatch flow priors"),
        Reported("sintel", "training", "14 sequences", "ATE", 0.124, "none", "GFlow AAAI 2025 camera-pose table, via "
                 "research/gaussians.md section 1.8", "RPE_t 0.039, RPE_r 0.599; best of two initialisations per "
                 "sequence"),
    ),
    reported_note=("the paper's numbers use MASt3R depth and UniMatch flow; motion4d takes any depth and flow "
                   "(files, or a motion4d flow model), so scores depend on those priors"),
    settings=(
        Setting("iterations", "500 on frame 0, then 150 camera + 300 Gaussian per frame on CUDA; on a CPU scaled "
                "to the image size, about 20 CPU-s per frame (schedule='auto'|'paper'|'cpu'; init_iterations=, "
                "camera_iterations=, gaussian_iterations=)", "500, then 150 + 300",
                "littlepure2333/GFlow scripts/fit_video.sh @ 83d5587", *_NO_PEER),
        Setting("epipolar threshold", "1.0 px of Sampson distance (epipolar_threshold=; epipolar_normalize=True "
                "makes it a fraction of the frame's maximum error)",
                "0.01 in the paper, 0.5 in move_seg.sh (normalised by the maximum)",
                "research/gaussians.md 1.4 (paper appendix, scripts/move_seg.sh)", *_NO_PEER),
        Setting("depth loss weight", "0 in the camera stage; 0.1 in the Gaussian stage for depth from files or a "
                "network, 0 for priors made from the video's own flow (lambda_depth_camera=, lambda_depth=)",
                "0.1 in both stages (paper; 1e-4 in the released code), with MASt3R depth",
                "research/gaussians.md 1.5 (paper loss table, released scripts)", *_NO_PEER,
                "a prior that is not consistent across frames pulled the camera off (two-view prior, tune scene of "
                "bench/gflow_quality.py: ATE / path 0.086 with the camera-stage term, 0.010 without)"),
        Setting("depth prior", "training-free two-view depth from the video's own flow (depth=, --depth: files, "
                "'constant' or Depth Anything V2 through transformers)",
                "MASt3R (paper; the released code reads DUSt3R depth files)", "research/gaussians.md 1.1-1.2",
                *_NO_PEER,
                "nothing to download; report scene of bench/gflow_quality.py (real photograph and stereo depth, "
                "known camera path, a real cut-out moving): held-out PSNR 23.87 dB against 22.72 with a constant "
                "plane and 25.84 with the true depth, ATE / path 0.009 (0.030, 0.006)"),
    ),
    speed=Speed(23.6, "frame", "3 monocular frames at 64x48 with ground-truth depth and flow, defaults", SPEED_RUN),
)
