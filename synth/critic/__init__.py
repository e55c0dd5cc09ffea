"""The critic: the judge model fine-tuned on verified outcomes (K2's closed-loop critic refinement).

``data``: critic examples from judged runs (one criterion, the code check behind it, its verified outcome);
``train``: the training job of the judge role; ``score``: judging examples through any served model, with the
evidence rule; ``report``: AUC, accuracy and quotes of the raw judge and the trained critic on held-out rows.
"""
