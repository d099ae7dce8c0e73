"""eval.logit_gaps: the gap and margin it reports, and its bad input."""

import numpy as np
import pytest

from eval import logit_gaps


def test_gap_is_top1_minus_top2_and_margin_is_true_minus_best_other():
    logits = np.array([[1.0, 5.0, 2.0], [3.0, 0.0, 7.0]])
    labels = np.array([1, 0])
    top2, margin = logit_gaps.gaps(logits, labels)
    np.testing.assert_allclose(top2, [3.0, 4.0])
    np.testing.assert_allclose(margin, [3.0, -4.0])  # the second image is misclassified


def test_a_malformed_classifier_argument_is_refused():
    with pytest.raises(SystemExit, match="DATASET=FOLDER"):
        logit_gaps.main(["--classifier", "imagenet=somewhere"])
