"""Model cards of the scene-flow methods (:class:`motion4d.cards.ModelCard`), one per registration.

Sources (commits of the stored snapshots): Lilac-Lee/Neural_Scene_Flow_Prior @ 0e4f403,
Lilac-Lee/FastNSF @ 386ab38, itailang/SCOOP @ 9f41e8b, kylevedder/zeroflow @ a338c68 (its
speed-vs-accuracy plot hard-codes the Argoverse 2 numbers quoted below), and the project's research
note ``research/scene_flow.md``. The NSFP, Fast NSF and SCOOP papers' result tables could not be
read here: their numbers are recorded as ``unverified``.
"""
from __future__ import annotations

from motion4d.cards import NONE_STATED, NOT_APPLICABLE, Licence, ModelCard, Reported, Setting, Speed, WeightCard

MOTION4D_LICENCE = Licence("Apache-2.0", "motion4d setup.py license field")
NO_WEIGHTS = Licence(NOT_APPLICABLE, "the method has no learned weights (per-pair optimisation or closed form)")
SPEED_RUN_1THREAD = ("bench/model_cards.py --threads 1, 2026-12-06 16:44, torch 2.13 CPU, 1 thread on a 2-core VM "
                     "(1-min load average 0.65 before, 0.83 after): compare ratios, not absolutes")
SPEED_RUN_FAST_RIGID_START = ("bench/model_cards.py --only nsfp,nsfp-fast --threads 1, 2026-12-06 18:50, after the "
                              "rigid start's rework; torch 2.13 CPU, 1 thread on a 2-core VM (1-min load average 0.90 "
                              "before, 1.54 after; nsfp 16.8 s in the same run): compare ratios, not absolutes")
SPEED_RUN = ("bench/model_cards.py, 2026-12-06 13:07, torch 2.13 CPU, 2 threads on a 2-core VM shared with other "
             "jobs (1-min load average 3.4 before, 6.0 after): compare ratios, not absolutes")
PAIR = "one synthetic pair of 2,048 points per cloud (pointclouds.synthetic), defaults"
ZEROFLOW_PLOT = ("kylevedder/zeroflow plot_performance.py @ a338c68 (ZeroFlow, ICLR 2024, speed-vs-accuracy figure), "
                 "via research/scene_flow.md section 2.5")
_AV2_NOTE = ("Argoverse 2 full point clouds (about 52,900 points), Threeway EPE; another group's run of the method, "
             "not the method's paper; GPU type not stated")
_NO_PEER = ("not in ptlflow", "ptlflow covers optical flow only")

ZERO_CARD = ModelCard(
    title="Zero flow (reference baseline)",
    task="scene flow",
    paper="none: a reference baseline (every point keeps its position)",
    paper_url="none: no paper",
    repository="motion4d (pointclouds/methods/baselines.py)",
    implementation="motion4d (pointclouds/methods/baselines.py)",
    code_licence=MOTION4D_LICENCE,
    implementation_licence=MOTION4D_LICENCE,
    weights_licence=NO_WEIGHTS,
    weights=(),
    reported=(),
    reported_note="none: its EPE3D equals the mean ground-truth flow magnitude of a data set",
    settings=(Setting("parameters", "none", "none (no official code)", "a baseline without official code", *_NO_PEER),),
    speed=Speed(6.87e-05, "point-cloud pair", PAIR, SPEED_RUN),
)

NN_CARD = ModelCard(
    title="Nearest-neighbour flow (reference baseline)",
    task="scene flow",
    paper="none: a reference baseline (flow to the nearest target point)",
    paper_url="none: no paper",
    repository="motion4d (pointclouds/methods/baselines.py)",
    implementation="motion4d (KD-tree on the CPU, brute force on GPU)",
    code_licence=MOTION4D_LICENCE,
    implementation_licence=MOTION4D_LICENCE,
    weights_licence=NO_WEIGHTS,
    weights=(),
    reported=(),
    reported_note="none: a reference baseline; no paper reports it under this name",
    settings=(Setting("neighbours", "1 nearest target point (backend=)", "none (no official code)",
                      "a baseline without official code", *_NO_PEER),),
    speed=Speed(0.0013, "point-cloud pair", PAIR, SPEED_RUN_1THREAD),
)

ICP_CARD = ModelCard(
    title="Rigid ICP flow (point-to-point, one transform per pair)",
    task="scene flow",
    paper="Besl, McKay: A Method for Registration of 3-D Shapes, IEEE TPAMI 1992",
    paper_url="no link checked here (IEEE TPAMI 1992)",
    repository="none: open3d's registration_icp (a KD-tree + Kabsch loop without open3d)",
    implementation="open3d.pipelines.registration.registration_icp, point-to-point (pointclouds/methods/baselines.py)",
    code_licence=Licence(NOT_APPLICABLE, "no official repository (1992 paper)"),
    implementation_licence=MOTION4D_LICENCE,
    weights_licence=NO_WEIGHTS,
    weights=(),
    reported=(Reported("argoverse2", "test", "all", "Threeway EPE", 0.204, "m", ZEROFLOW_PLOT,
                       _AV2_NOTE + "; 523 ms per pair there"),),
    reported_note="an ICP baseline as another paper ran it; ICP variants differ (thresholds, iterations)",
    settings=(Setting("iterations", "50 within 1.0 m (max_iterations=, max_correspondence_distance=)",
                      "100 within 1.0 m (NSFP's pseudo-ground-truth refinement; no official ICP code)",
                      "Lilac-Lee/Neural_Scene_Flow_Prior preprocess_sf_*.py @ 0e4f403 (research/scene_flow.md 2.4)",
                      *_NO_PEER),),
    speed=Speed(0.00917, "point-cloud pair", PAIR, SPEED_RUN_1THREAD),
)

_NSFP_PAPER = "Li, Kaesemodel Pontes, Lucey: Neural Scene Flow Prior, NeurIPS 2021"
NSFP_CARD = ModelCard(
    title="Neural Scene Flow Prior (NSFP)",
    task="scene flow",
    paper=_NSFP_PAPER,
    paper_url="https://papers.nips.cc/paper/2021/file/41263b9a46f6f8f22668476661614478-Paper.pdf",
    repository="https://github.com/Lilac-Lee/Neural_Scene_Flow_Prior (read @ 0e4f403)",
    implementation="motion4d re-implementation (per-pair MLP fit, truncated chamfer, cycle network, early stopping)",
    code_licence=Licence("MIT", "Lilac-Lee/Neural_Scene_Flow_Prior LICENSE @ 0e4f403"),
    implementation_licence=MOTION4D_LICENCE,
    weights_licence=NO_WEIGHTS,
    weights=(),
    reported=(
        Reported("kitti", "test", "all", "EPE3D", None, "m", "Li et al., NeurIPS 2021",
                 "unverified: the paper's tables (KITTI, Argoverse, nuScenes, FlyingThings3D; 2,048 points and dense) "
                 "were not readable here"),
        Reported("argoverse2", "test", "all", "Threeway EPE", 0.068, "m", ZEROFLOW_PLOT,
                 _AV2_NOTE + "; 26.3 s +- 18.1 s per pair there"),
    ),
    reported_note=("NSFP fits each pair from scratch, so the numbers depend only on the settings and the data "
                   "preparation (the released Argoverse / nuScenes loaders sample 80% of points inside tracked boxes)"),
    settings=(
        Setting("iterations", "<= 5,000, patience 30 (max_iterations=, patience=; min_delta 1e-4)",
                "<= 5,000, patience 70 (KITTI; 30 for Argoverse, nuScenes, FlyingThings3D in the README "
                "commands, 2,048 points; 100 in config.py)", "Lilac-Lee/Neural_Scene_Flow_Prior README.md, config.py @ 0e4f403",
                *_NO_PEER),
        Setting("learning rate", "8e-3 (lr=)", "8e-3", "Lilac-Lee/Neural_Scene_Flow_Prior config.py @ 0e4f403",
                *_NO_PEER),
        Setting("initialisation", "fresh seeded network per pair (seed=)",
                "the forward network carries over from the previous pair", "Lilac-Lee/Neural_Scene_Flow_Prior "
                "optimization.py @ 0e4f403 (research/scene_flow.md 2.1)", *_NO_PEER,
                "results do not depend on the order of the pairs"),
    ),
    speed=Speed(15.4, "point-cloud pair", PAIR, SPEED_RUN_1THREAD),
)

NSFP_FAST_CARD = ModelCard(
    title="Fast scene flow: rigid start + residual field (after Fast Neural Scene Flow's cheap per-pair loss)",
    task="scene flow",
    paper=("Li, Zheng, Ferroni, Kaesemodel Pontes, Lucey: Fast Neural Scene Flow, ICCV 2023 (the prior: "
           + _NSFP_PAPER + ")"),
    paper_url="https://arxiv.org/abs/2304.09121",
    repository="https://github.com/Lilac-Lee/FastNSF (read @ 386ab38)",
    implementation=("motion4d's own method (pointclouds/methods/nsfp_fast.py), scale- and axis-free: a point-to-plane "
                    "ICP start kept where it explains the scene (and one per cluster of movers it leaves off the "
                    "target), a 4x64 residual field in units of the point spacing fitted on exact KD-tree neighbours, "
                    "the rigid flow kept where it fits the target surfaces as well; "
                    "Fast NSF's distance-transform grid remains as loss='dt'"),
    code_licence=Licence("MIT", "Lilac-Lee/FastNSF LICENSE @ 386ab38"),
    implementation_licence=MOTION4D_LICENCE,
    weights_licence=NO_WEIGHTS,
    weights=(),
    reported=(
        Reported("argoverse", "val", "all", "EPE3D", None, "m", "Li et al., ICCV 2023",
                 "unverified: the paper's tables were not readable here; its README claims up to 30x speed-up "
                 "over NSFP with on-par accuracy"),
    ),
    reported_note="motion4d's fast mode differs from released Fast NSF (see settings), so the paper's numbers "
                  "are a reference, not a reproduction target",
    settings=(
        Setting("iterations", "<= 158: 150 mini-batch steps (an eighth of the cloud, 256-1,024 points) then full-cloud "
                "steps, patience 3", "<= 5,000, patience 5-10 (5 at 8,192 points, 10 for full clouds; min_delta 1e-3)",
                "Lilac-Lee/FastNSF README.md commands @ 386ab38",
                "OpenSceneFlow: patience 10", "KTH-RPL/OpenSceneFlow configs @ 848bf86 (lr 8e-3, min_delta 5e-5; "
                "research/scene_flow.md 2.7)"),
        Setting("loss", "exact nearest neighbours on prebuilt KD-trees (truncated at 1 L, L = 10 point spacings) + "
                "target-to-source term, on top of a point-to-plane ICP start",
                "distance transform (0.1 m voxels, FastGeodis), forward term only",
                "Lilac-Lee/FastNSF optimization.py @ 386ab38", *_NO_PEER),
    ),
    speed=Speed(0.617, "point-cloud pair", PAIR, SPEED_RUN_FAST_RIGID_START),
)

_SCOOP_DRIVE = ("Google Drive file 14M0R0AMJhsyGZYHDIp3p8QStCkKCy_bO (itailang/SCOOP download_pretrained_models.sh "
                "@ 9f41e8b); not downloadable by name here: pass weights=PATH")
_SCOOP_TABLE = "Lang et al., CVPR 2023"
_SCOOP_UNVERIFIED = "unverified: the SCOOP paper's tables were not readable here (research/scene_flow.md 1.7)"
SCOOP_CARD = ModelCard(
    title="SCOOP: self-supervised correspondence and optimisation-based scene flow",
    task="scene flow",
    paper=("Lang, Aiger, Cole, Avidan, Rubinstein: SCOOP: Self-Supervised Correspondence and Optimization-Based "
           "Scene Flow, CVPR 2023"),
    paper_url="https://arxiv.org/abs/2211.14020",
    repository="https://github.com/itailang/SCOOP (read @ 9f41e8b)",
    implementation=("motion4d re-implementation (SetConv features, one Sinkhorn iteration, top-64 soft "
                    "correspondence, test-time refinement); loads the authors' .tar checkpoints"),
    code_licence=Licence("MIT", "itailang/SCOOP LICENSE and README.md @ 9f41e8b"),
    implementation_licence=MOTION4D_LICENCE,
    weights_licence=Licence(NONE_STATED, "itailang/SCOOP README.md @ 9f41e8b",
                            "the README's MIT licence names the project; the pretrained models are not mentioned"),
    weights=(
        WeightCard("ft3d_o", "self-supervised on 1,800 FT3D_o examples (FlowNet3D's FlyingThings3D)",
                   "pretrained_models/ft3d_o_1800_examples/model_e100.tar", _SCOOP_DRIVE,
                   reported=(Reported("kitti_o", "test", "2,048 points", "EPE3D", None, "m", _SCOOP_TABLE,
                                      _SCOOP_UNVERIFIED),)),
        WeightCard("ft3d_s", "self-supervised on 1,800 FT3D_s examples (HPLFlowNet's FlyingThings3D)",
                   "pretrained_models/ft3d_s_1800_examples/model_e060.tar", _SCOOP_DRIVE,
                   reported=(Reported("kitti_s", "test", "8,192 points", "EPE3D", None, "m", _SCOOP_TABLE,
                                      _SCOOP_UNVERIFIED),
                             Reported("ft3d_s", "test", "8,192 points", "EPE3D", None, "m", _SCOOP_TABLE,
                                      _SCOOP_UNVERIFIED))),
        WeightCard("kitti_v", "self-supervised on the 100 KITTI_v examples", "pretrained_models/kitti_v_100_examples/"
                   "model_e400.tar", _SCOOP_DRIVE,
                   reported=(Reported("kitti_t", "test", "2,048 points", "EPE3D", None, "m", _SCOOP_TABLE,
                                      _SCOOP_UNVERIFIED),)),
        WeightCard("synthetic", "motion4d train-scoop on rotated synthetic street scenes (pointclouds.synthetic, "
                   "seed 42, 440 steps, 40 CPU minutes): NOT the paper's weights",
                   "not released (motion4d's own)", "motion4d (this package)",
                   asset="packaged with motion4d: pointclouds/methods/weights/scoop_synthetic.pt",
                   note="the default when weights= is omitted (with a notice); command, data seed and training time "
                        "in pointclouds/methods/weights/README.md",
                   reported=(Reported("motion4d-reporting-set", "report", "8,192 points", "EPE3D", 0.336,
                                      "m", "bench/scene_flow.py --max-points 8192 (2026-12-06)",
                                      "measured here with test-time refinement, not a paper number"),)),
    ),
    reported=(),
    reported_note=("the evaluation scripts print EPE3D, AccS, AccR and outliers averaged over scenes; run them "
                   "with the released checkpoints to get reference numbers (motion4d sceneflow --dataset ...)"),
    settings=(
        Setting("refinement steps", "150 at lr 0.2 (preset='default'; presets kitti_o, kitti_t, kitti_s, ft3d_s "
                "reproduce the scripts)", "150 at lr 0.2 (evaluate_scoop.py default; 1,000 at 0.05 in "
                "evaluate_on_kitti_t.sh)",
                "itailang/SCOOP scripts/evaluate_scoop.py, scripts/evaluate_on_kitti_t.sh @ 9f41e8b", *_NO_PEER),
    ),
    speed=Speed(2.24, "point-cloud pair", PAIR + " (untrained network: speed does not depend on the weights)",
                SPEED_RUN_1THREAD),
)
