"""What a repository serves, in words: the members that vote on each head and how they are
combined (majority vote, a mean / weighted mean of their probabilities with any per-class offsets, or a
stacker), and the ensemble's warnings.

``memotion export`` prints these lines and the gateway logs them at start-up, so nobody serves one
member while believing the three-member ensemble answers.
"""

from __future__ import annotations

from collections.abc import Sequence

from memotion.manifest import EnsembleEntry


def voters_by_head(ensemble: EnsembleEntry, heads: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Head -> the members voting on it (Task B heads as ``task_b:<head>`` when voted directly)."""
    voters = {head: ensemble.members_for(head) for head in heads}
    if ensemble.task_b == "direct":
        voters.update({f"task_b:{head}": ensemble.task_b_members_for(head) for head in ensemble.task_b_members})
    return voters


def combination(ensemble: EnsembleEntry, head: str, members: tuple[str, ...]) -> str:
    """How ``head``'s voters are combined, in words ("" for the paper's majority vote)."""
    if head.startswith("task_b:") or ensemble.rule_for(head) == "majority_vote":
        return ""
    if ensemble.rule_for(head) == "stacked_lr":
        return " (stacked logistic regression fitted on validation)"
    offsets = ensemble.task_offsets.get(head)
    calibrated = "" if offsets is None else f", class offsets {', '.join(f'{b:+.1f}' for b in offsets)}"
    weights = ensemble.weights_for(head, members)
    if weights is None:
        return f" (mean probability{calibrated})"
    return f" (weighted mean probability: {', '.join(f'{m} {w:.2f}' for m, w in zip(members, weights))}{calibrated})"


def served_voters(ensemble: EnsembleEntry, heads: Sequence[str]) -> list[str]:
    """One line for the members, one per group of heads with the same voters and rule, one per warning."""
    groups: dict[tuple[tuple[str, ...], str], list[str]] = {}
    for head, members in voters_by_head(ensemble, heads).items():
        groups.setdefault((members, combination(ensemble, head, members)), []).append(head)
    lines = [
        f"serving {len(ensemble.members)} member(s) {', '.join(ensemble.members)} (selection: {ensemble.selection})"
    ]
    lines += [f"  {', '.join(group)} <- {' + '.join(members)}{rule}" for (members, rule), group in groups.items()]
    return lines + [f"WARNING: {warning}" for warning in ensemble.warnings]
