"""The audit's rules: every commit of main explained from the records, or flagged."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from integrator.audit import (
    Commit,
    Landing,
    ModeChange,
    Records,
    Verdict,
    covered,
    explain,
    modes_between,
)
from integrator.audit_report import Report, item, parse_since, summary, within
from integrator.errors import InvalidInput, NotFound
from integrator.policy import Mode

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
ZERO = "0" * 40


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def sha(name: str) -> str:
    return name.encode().hex().ljust(40, "0")[:40]


def chain(*names: str, trailers: dict[str, str] | None = None) -> list[Commit]:
    """Commits oldest first by name, each the first parent of the next; returned newest
    first, as main's first-parent history reads. A commit's time is its index in minutes."""
    commits = []
    for n, name in enumerate(names):
        attempt = (trailers or {}).get(name)
        commits.append(
            Commit(
                sha=sha(name),
                parents=(sha(names[n - 1]),) if n else (),
                subject=f"commit {name}",
                author="Ann <ann@example.test>",
                committed_at=at(n),
                attempts=(attempt,) if attempt else (),
                trailered=attempt is not None,
            )
        )
    return commits[::-1]


def verdict(old: str | None, new: str, when: float, **over: Any) -> Verdict:
    fields: dict[str, Any] = {
        "seq": int(when * 10),
        "at": at(when),
        "old": sha(old) if old else ZERO,
        "new": sha(new),
        "base": sha(old) if old else None,
        "mode": Mode.shadow,
        "would_reject": True,
        "reason_code": "not_registered",
        "pusher": "alice",
        "identity_source": "plain",
    }
    return Verdict(**{**fields, **over})


def landing(old: str, new: str, attempt: str, when: float, **over: Any) -> Landing:
    fields: dict[str, Any] = {
        "registration_id": 7,
        "status": "landed",
        "old": sha(old),
        "new": sha(new),
        "attempt": attempt,
        "epoch": 3,
        "created_at": at(when),
        "candidate_id": 12,
        "slug": "feature-x",
        "branch": "feat/x",
        "submitted_by": "reporter-bot",
        "approved_by": "reviewer-bot",
    }
    return Landing(**{**fields, **over})


def kinds(audited: list[Any]) -> list[str]:
    return [a.explanation.kind for a in audited]


CUTOVER_AT_5 = {"mode_changes": [ModeChange(at(5), Mode.cutover)]}


def test_a_landed_registration_with_the_commits_attempt_sha_and_first_parent_explains_it() -> None:
    """queue: the candidate, who submitted and approved it, the epoch and the registration."""
    commits = chain("a", "b", trailers={"b": "att-1"})
    records = Records(landings=[landing("a", "b", "att-1", 1)], guard_since=at(0),
                      guard_first_old=sha("a"), **CUTOVER_AT_5)  # fmt: skip

    top = explain(commits, records)[0]

    assert top.explanation.kind == "queue"
    assert top.mode is Mode.cutover and not top.failure
    assert top.explanation.fields == {
        "candidate_id": 12, "slug": "feature-x", "branch": "feat/x",
        "submitted_by": "reporter-bot", "approved_by": "reviewer-bot", "epoch": 3,
        "registration_id": 7, "registration_status": "landed", "attempt": "att-1",
        "lane": "normal", "promoted_by": None, "promotion_reason": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    "change",
    [
        {"attempt": "another-attempt"},
        {"new": sha("elsewhere")},
        {"old": sha("elsewhere")},
        {"status": "failed"},
        {"status": "void"},
        {"status": "registered"},
    ],
    ids=lambda c: "-".join(f"{k}={v[:8]}" for k, v in c.items()),
)
def test_a_registration_explains_nothing_unless_attempt_new_old_and_status_all_match(
    change: dict[str, str],
) -> None:
    """A near miss is no explanation: the commit is unexplained, a failure in cutover."""
    commits = chain("a", "b", trailers={"b": "att-1"})
    records = Records(
        landings=[replace(landing("a", "b", "att-1", 6), **change)],
        guard_since=at(0), guard_first_old=sha("a"), **CUTOVER_AT_5,
    )  # fmt: skip

    top = explain(commits, records)[0]

    assert top.explanation.kind == "unexplained" and top.failure


def test_an_authorized_registration_whose_commit_is_on_main_explains_it_pending_confirmation() -> (
    None
):
    """The guard let that exact update through; post-receive's landed report may be late."""
    commits = chain("a", "b", trailers={"b": "att-1"})
    records = Records(landings=[landing("a", "b", "att-1", 6, status="authorized")],
                      guard_since=at(0), guard_first_old=sha("a"))  # fmt: skip

    top = explain(commits, records)[0]

    assert top.explanation.kind == "queue"
    assert "authorized: its landing is not confirmed yet" in summary(top.explanation)


def test_a_forged_integrator_trailer_without_a_registration_is_unexplained_in_cutover() -> None:
    """A trailer alone explains nothing: anyone can write one."""
    commits = chain("a", "b", trailers={"b": "forged"})
    records = Records(guard_since=at(0), guard_first_old=sha("a"), **CUTOVER_AT_5)

    top = explain(commits, records)[0]

    assert (top.explanation.kind, top.mode, top.failure) == ("unexplained", Mode.cutover, True)
    assert top.explanation.fields["trailer_without_registration"] is True
    assert "a trailer alone explains nothing" in summary(top.explanation)


def test_a_shadow_push_verdict_explains_every_commit_its_update_brought_on_the_chain() -> None:
    """old..new on the first-parent chain: three commits pushed at once, one verdict."""
    commits = chain("a", "b", "c", "d")
    records = Records(verdicts=[verdict("a", "d", 4)], guard_since=at(4),
                      guard_first_old=sha("a"))  # fmt: skip

    audited = explain(commits, records)

    assert kinds(audited) == ["push", "push", "push", "before_guard"]
    fields = audited[0].explanation.fields
    assert (fields["pusher"], fields["decision"], fields["verdict_event_seq"]) == (
        "alice", "would_reject", 40
    )  # fmt: skip
    assert audited[0].mode is Mode.shadow
    assert summary(audited[0].explanation) == (
        "push by alice (plain) in shadow: would have been refused in cutover, verdict #40"
    )


def test_a_shadow_push_of_a_trailered_commit_is_a_would_reject_that_says_so() -> None:
    """In shadow a person's push of a commit with integrator trailers is explained by its
    verdict, and the explanation says the trailer matches no registration."""
    commits = chain("a", "b", trailers={"b": "copied"})
    records = Records(verdicts=[verdict("a", "b", 2)], guard_since=at(2), guard_first_old=sha("a"))

    top = explain(commits, records)[0]

    assert top.explanation.kind == "push"
    assert top.explanation.fields["decision"] == "would_reject"
    assert top.explanation.fields["trailer_without_registration"] is True


def test_a_verdict_whose_new_is_not_on_the_chain_explains_nothing() -> None:
    """An allowed push that main no longer holds (rewritten since) covers no commit."""
    commits = chain("a", "b")
    assert covered(commits, [verdict("a", "gone", 1)]) == {}


def test_a_creation_covers_the_whole_history_it_brought() -> None:
    commits = chain("a", "b", "c")
    assert set(covered(commits, [verdict(None, "c", 1)])) == {0, 1, 2}


def test_overlapping_verdicts_give_each_commit_the_push_nearest_above_it() -> None:
    """A forced push that re-sent older commits does not take them from their own push."""
    commits = chain("a", "b", "c", "d")
    first = verdict("a", "b", 1, pusher="bob")
    forced = verdict("b", "d", 2, pusher="carol", base=None)

    found = covered(commits, [first, forced])

    assert [found[i].pusher for i in range(4)] == ["carol", "carol", "bob", "carol"]


@pytest.mark.parametrize(("flag", "kind"), [(True, "break_glass"), (False, "fail_open")])
def test_a_verdict_the_hook_gave_alone_in_cutover_is_a_bypass(flag: bool, kind: str) -> None:
    commits = chain("a", "b")
    alone = verdict("a", "b", 6, mode=Mode.cutover, decided_locally=True, bypass=flag,
                    would_reject=True, reason_code="service_unavailable")  # fmt: skip
    records = Records(verdicts=[alone], guard_since=at(0), guard_first_old=sha("a"),
                      **CUTOVER_AT_5)  # fmt: skip

    top = explain(commits, records)[0]

    assert (top.explanation.kind, top.failure) == ("bypass", False)
    assert top.explanation.fields["bypass_kind"] == kind
    assert summary(top.explanation).startswith(f"bypass ({kind.replace('_', '-')}) by alice")


def test_a_verdict_the_hook_gave_alone_in_shadow_is_a_push_decided_locally() -> None:
    commits = chain("a", "b")
    alone = verdict("a", "b", 1, decided_locally=True)
    records = Records(verdicts=[alone], guard_since=at(0), guard_first_old=sha("a"))

    top = explain(commits, records)[0]

    assert top.explanation.kind == "push" and top.explanation.fields["decided_locally"]
    assert "decided by the hook alone" in summary(top.explanation)


def test_history_from_before_the_first_record_is_before_the_guard_and_what_follows_is_not() -> None:
    """Main as the guard first saw it is the first record's old; a commit put on top of it
    without any record is unexplained."""
    commits = chain("a", "b", "c", "d")
    records = Records(verdicts=[verdict("c", "d", 9)], guard_since=at(1),
                      guard_first_old=sha("b"))  # fmt: skip

    assert kinds(explain(commits, records)) == ["push", "unexplained", "before_guard",
                                                "before_guard"]  # fmt: skip


def test_without_the_first_records_old_the_commits_made_before_it_are_before_the_guard() -> None:
    """A first record that created main (old zero): the commit dates decide, from the bottom."""
    commits = chain("a", "b", "c", "d")
    records = Records(verdicts=[verdict("c", "d", 9)], guard_since=at(1.5))

    assert kinds(explain(commits, records)) == ["push", "unexplained", "before_guard",
                                                "before_guard"]  # fmt: skip


def test_with_no_record_at_all_nothing_was_ever_watched() -> None:
    assert set(kinds(explain(chain("a", "b"), Records()))) == {"before_guard"}


def test_an_unexplained_commit_between_two_shadow_pushes_is_a_warning_in_shadow() -> None:
    """It reached main after the older push and before the newer one: shadow all along."""
    commits = chain("a", "b", "c", "d")
    records = Records(
        verdicts=[verdict("a", "b", 2), verdict("c", "d", 3)],
        guard_since=at(2), guard_first_old=sha("a"), **CUTOVER_AT_5,
    )  # fmt: skip

    middle = explain(commits, records)[1]

    assert (middle.explanation.kind, middle.mode, middle.failure) == (
        "unexplained", Mode.shadow, False
    )  # fmt: skip
    fields = middle.explanation.fields
    assert (fields["window_after"], fields["window_before"]) == (at(2).isoformat(),
                                                                 at(3).isoformat())  # fmt: skip


def test_an_unexplained_commit_whose_window_touches_cutover_is_a_failure() -> None:
    """Cutover began between its explained neighbours: it may have come in cutover."""
    commits = chain("a", "b", "c", "d", trailers={"d": "att"})
    records = Records(
        verdicts=[verdict("a", "b", 2)], landings=[landing("c", "d", "att", 8)],
        guard_since=at(2), guard_first_old=sha("a"), **CUTOVER_AT_5,
    )  # fmt: skip

    middle = explain(commits, records)[1]

    assert (middle.mode, middle.failure) == (Mode.cutover, True)
    assert middle.explanation.fields["modes"] == ["shadow", "cutover"]


def test_the_newest_unexplained_commit_is_judged_up_to_now() -> None:
    """Nothing newer bounds it: cutover in force now makes it a failure."""
    commits = chain("a", "b", "c")
    records = Records(verdicts=[verdict("a", "b", 2)], guard_since=at(2),
                      guard_first_old=sha("a"), **CUTOVER_AT_5)  # fmt: skip

    assert explain(commits, records)[0].failure


def test_a_rollback_after_the_window_does_not_clear_a_failure_and_shadow_only_is_a_warning() -> (
    None
):
    records = Records(mode_changes=[ModeChange(at(5), Mode.cutover),
                                    ModeChange(at(9), Mode.shadow)])  # fmt: skip
    assert modes_between(records, at(6), at(7)) == [Mode.cutover]
    assert modes_between(records, at(1), at(4)) == [Mode.shadow]
    assert modes_between(records, None, at(6)) == [Mode.shadow, Mode.cutover]
    assert modes_between(records, at(10), None) == [Mode.shadow]


def report(audited: list[Any]) -> Report:
    return Report("app", audited[0].commit.sha if audited else None, None, audited)


def test_the_body_pages_by_sha_and_lists_every_unexplained_commit_failures_first() -> None:
    commits = chain("a", "b", "c", "d", "e")
    records = Records(
        verdicts=[verdict("a", "b", 2), verdict("c", "d", 3)],
        guard_since=at(2), guard_first_old=sha("a"), **CUTOVER_AT_5,
    )  # fmt: skip
    audited = explain(commits, records)  # e: failure (after cutover), c: warning

    first = report(audited).as_dict(None, 2)
    second = report(audited).as_dict(first["next_cursor"], 10)

    assert [i["sha"] for i in first["items"]] == [sha("e"), sha("d")]
    assert first["next_cursor"] == sha("c")
    assert [i["sha"] for i in second["items"]] == [sha("c"), sha("b"), sha("a")]
    assert second["next_cursor"] is None
    assert (first["unexplained"], first["unexplained_after_cutover"], first["total"]) == (2, 1, 5)
    assert [(i["sha"], i["failure"]) for i in first["unexplained_items"]] == [
        (sha("e"), True), (sha("c"), False)
    ]  # fmt: skip
    assert first["counts"] == {"queue": 0, "push": 2, "bypass": 0, "before_guard": 1,
                               "unexplained": 2}  # fmt: skip
    assert first["before_guard"] == {"count": 1, "newest": sha("a"), "oldest": sha("a")}


def test_a_cursor_outside_the_range_is_not_found_naming_the_field() -> None:
    with pytest.raises(NotFound) as refused:
        report(explain(chain("a"), Records())).as_dict(sha("zz"), 10)
    assert refused.value.details[0].field == "cursor"


def test_an_item_carries_its_kind_summary_and_fields() -> None:
    audited = explain(
        chain("a", "b"),
        Records(verdicts=[verdict("a", "b", 1)], guard_since=at(1), guard_first_old=sha("a")),
    )
    shown = item(audited[0])
    assert shown["explanation"]["kind"] == "push"
    assert shown["explanation"]["summary"] == summary(audited[0].explanation)
    assert (shown["mode"], shown["failure"], shown["author"]) == (
        "shadow",
        False,
        "Ann <ann@example.test>",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T13:00:00+01:00", datetime(2026, 11, 1, 12, tzinfo=UTC)),
        ("2026-11-01T12:00:00Z", datetime(2026, 11, 1, 12, tzinfo=UTC)),
    ],
)
def test_since_takes_a_date_as_utc(text: str, expected: datetime) -> None:
    assert parse_since(text).time == expected


@pytest.mark.parametrize("text", ["main~3", "v1.2", "abc123", "HEAD@{2}"])
def test_since_takes_anything_else_as_a_revision(text: str) -> None:
    assert parse_since(text).rev == text


@pytest.mark.parametrize(("text", "rule"), [("2026-13-01", "date"), ("--all", "revision"),
                                            ("a b", "revision")])  # fmt: skip
def test_since_refuses_a_bad_date_or_an_option_naming_the_field(text: str, rule: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_since(text)
    assert (refused.value.details[0].field, refused.value.details[0].rule) == ("since", rule)


def test_within_keeps_the_commits_after_a_revision_or_committed_since_a_date() -> None:
    audited = explain(chain("a", "b", "c"), Records())
    assert [a.commit.sha for a in within(audited, shas={sha("c")})] == [sha("c")]
    assert [a.commit.sha for a in within(audited, since=at(1))] == [sha("c"), sha("b")]


def test_a_commit_made_in_the_same_second_the_guard_began_is_not_history_from_before_it() -> None:
    """git keeps whole seconds: a commit stamped in the guard's first second may follow it."""
    commits = chain("a", "b")  # b committed at at(1), a whole minute
    records = Records(guard_since=at(1) + timedelta(milliseconds=700), **CUTOVER_AT_5)

    assert kinds(explain(commits, records)) == ["unexplained", "before_guard"]


def test_an_unexplained_commit_says_the_mode_it_came_in_or_that_it_may_have_come_in_cutover() -> (
    None
):
    records = Records(verdicts=[verdict("a", "b", 2)], guard_since=at(2),
                      guard_first_old=sha("a"), **CUTOVER_AT_5)  # fmt: skip
    between = explain(chain("a", "b", "c"), records)[0]
    shadow_only = explain(chain("a", "b", "c"), replace(records, mode_changes=[]))[0]

    assert summary(between.explanation).endswith(
        "between its explained neighbours the mode was shadow, then cutover; it may have come "
        "in cutover"
    )
    assert summary(shadow_only.explanation).endswith("; it reached main in shadow")


def test_a_push_in_off_mode_is_explained_by_its_allowed_verdict() -> None:
    """off records every update of main as push_allowed, so that the audit can explain it."""
    commits = chain("a", "b")
    off = verdict("a", "b", 1, mode=Mode.off, would_reject=False, reason_code="mode_off")
    records = Records(verdicts=[off], initial_mode=Mode.off, guard_since=at(1),
                      guard_first_old=sha("a"))  # fmt: skip

    top = explain(commits, records)[0]

    assert (top.explanation.kind, top.mode, top.explanation.fields["decision"]) == (
        "push", Mode.off, "allowed"
    )  # fmt: skip
    assert summary(top.explanation) == "push by alice (plain) in off: allowed, verdict #10"
