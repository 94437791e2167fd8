"""The model card's numbers matched to evaluated subsets (motion.evaluation.paper)."""
from __future__ import annotations

from motion.evaluation.paper import comparison_lines, paper_numbers
from motion.evaluation.reports import HEADLINES
from motion.evaluation.subsets import Subset
from motion.registry import model_entry

SINTEL_COLUMNS = [c for c, _, _ in HEADLINES["sintel"]]
KITTI_COLUMNS = [c for c, _, _ in HEADLINES["kitti"]]


def test_training_split_numbers_are_targets_test_split_numbers_references():
    card = model_entry("videoflow-bof").card
    numbers = paper_numbers(card, "sintel", Subset("sintel", "training", "clean"), SINTEL_COLUMNS)
    assert {(n.reported.value, n.same_split) for n in numbers} == {(0.37, True), (1.005, False)}
    lines = comparison_lines(numbers, {"sintel-clean": {"EPE": 0.5}})
    assert lines[0].startswith("- sintel-clean EPE (sintel weights): ours 0.500, paper 0.37 px (+0.130)")
    assert "in-domain" in lines[0]
    assert "paper 1.005 px on the test split, not comparable with this training-split score" in lines[1]


def test_kitti_columns_and_aliases():
    card = model_entry("videoflow-bof").card
    numbers = paper_numbers(card, "things_288960", Subset("kitti", "training", None), KITTI_COLUMNS)
    assert {(n.column, n.reported.value) for n in numbers} == {("EPE", 3.96), ("Fl-all", 15.3)}
    assert paper_numbers(card, "no-such-weights", Subset("kitti", "training", None), KITTI_COLUMNS) == []
    assert paper_numbers(card, "/some/file.pth", Subset("kitti", "training", None), KITTI_COLUMNS) == []


def test_methods_without_weight_sets_use_the_card_numbers():
    splatflow = model_entry("splatflow").card  # has weight sets: without weights nothing is comparable
    assert paper_numbers(splatflow, None, Subset("sintel", "training", "clean"), SINTEL_COLUMNS) == []
    assert paper_numbers(None, "kitti", Subset("kitti", "training", None), KITTI_COLUMNS) == []
