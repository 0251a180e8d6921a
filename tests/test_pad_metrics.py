"""ISO/IEC 30107-3 error rates on a small fixed score list, against numbers worked out by hand from the definitions."""
from __future__ import annotations

import pytest

from edgepad.data.metrics import eer_threshold, pad_metrics

# spoof scores (higher = more likely an attack)
LIVE = [0.1, 0.2, 0.3, 0.6]
PRINT = [0.4, 0.7, 0.8, 0.9]
REPLAY = [0.25, 0.35, 0.85, 0.95]
SCORES = LIVE + PRINT + REPLAY
TYPES = ["live"] * 4 + ["print"] * 4 + ["replay"] * 4


def test_rates_at_a_given_threshold():
    # t = 0.5: an attack passes when its score < 0.5, a live face is rejected when its score >= 0.5.
    # print: 0.4 passes -> 1/4.  replay: 0.25, 0.35 pass -> 2/4.  live: 0.6 rejected -> 1/4.
    m = pad_metrics(SCORES, TYPES, 0.5)
    assert m.apcer_per_type == {"print": 0.25, "replay": 0.5}
    assert m.apcer_max == 0.5
    assert m.apcer_pooled == 3 / 8
    assert m.bpcer == 0.25
    assert m.acer == pytest.approx((0.5 + 0.25) / 2)  # 0.375
    assert m.counts == {"live": 4, "print": 4, "replay": 4}


def test_a_score_equal_to_the_threshold_is_an_attack():
    # t = 0.6: the live 0.6 is rejected (>=), so BPCER 1/4; print 0.4 passes; replay 0.25, 0.35 pass.
    m = pad_metrics(SCORES, TYPES, 0.6)
    assert (m.bpcer, m.apcer_per_type["print"], m.apcer_per_type["replay"]) == (0.25, 0.25, 0.5)
    m = pad_metrics(SCORES, TYPES, 0.61)
    assert m.bpcer == 0.0


def test_eer_threshold():
    # Pooled attacks sorted: .25 .35 .4 .7 .8 .85 .9 .95; live: .1 .2 .3 .6.
    #   t=.35: APCER 1/8, BPCER 1/4 (gap .125);  t=.4: APCER 2/8, BPCER 1/4 (gap 0);  t=.6: APCER 3/8, BPCER 1/4.
    # So the EER threshold is 0.4 with EER 0.25, and there: print APCER 0, replay 2/4, BPCER 1/4, ACER .375.
    threshold, eer = eer_threshold(SCORES, TYPES)
    assert threshold == 0.4
    assert eer == 0.25
    m = pad_metrics(SCORES, TYPES, threshold)
    assert m.apcer_per_type == {"print": 0.0, "replay": 0.5}
    assert m.acer == 0.375


def test_perfect_separation_has_zero_eer():
    threshold, eer = eer_threshold([0.1, 0.2, 0.8, 0.9], ["live", "live", "print", "replay"])
    assert eer == 0.0
    assert 0.2 < threshold <= 0.8


def test_metrics_need_both_classes():
    with pytest.raises(ValueError, match="only attacks"):
        pad_metrics([0.3, 0.7], ["print", "replay"], 0.5)
    with pytest.raises(ValueError, match="bona fide and attack"):
        eer_threshold([0.3, 0.7], ["live", "live"])
