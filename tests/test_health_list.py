"""Parsing the health list in batches gives exactly what parsing it whole gives."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from late_monitor.errors import BadPayload
from late_monitor.health_list import BATCH_BYTES, HealthParser, fingerprint, parse_health
from late_monitor.models import Observation
from late_monitor.simulator import make_accounts

SMALL = 300  # bytes per batch: a few accounts each, so that every body below is cut often


def whole(body: bytes) -> dict[str, Observation]:
    """The reference: the same body parsed in one piece."""
    return dict(parse_health(body, batch_bytes=len(body) + 1).accounts)


def accounts(n: int) -> list[dict[str, Any]]:
    return [
        {
            "accountId": f"acc_{i:05d}",
            "platform": "twitter",
            "username": f"@user_{i}",
            "displayName": f"User {i}",
            "status": ["healthy", "warning", "error"][i % 3],
            "canPost": i % 5 != 0,
            "tokenValid": True,
            "tokenExpiresAt": "2027-01-01T00:00:00Z",
            "needsReconnect": i % 7 == 0,
            "issues": ["x"] if i % 4 == 0 else [],
        }
        for i in range(n)
    ]


@pytest.mark.parametrize(
    "dump",
    [
        lambda p: json.dumps(p, separators=(",", ":")),  # Late's own, compact
        lambda p: json.dumps(p),  # ", " between items, as the simulator writes
        lambda p: json.dumps(p, indent=2),  # newlines and indentation between accounts
    ],
    ids=["compact", "spaced", "indented"],
)
@pytest.mark.parametrize("summary_first", [True, False])
def test_a_body_cut_into_batches_parses_as_the_whole(dump: Any, summary_first: bool) -> None:
    listed = accounts(60)
    summary = {"total": 60, "healthy": 20, "warning": 20, "error": 20, "needsReconnect": 9}
    payload = (
        {"summary": summary, "accounts": listed}
        if summary_first
        else {"accounts": listed, "summary": summary}
    )
    body = dump(payload).encode()

    parsed = parse_health(body, batch_bytes=SMALL).accounts

    assert len(body) > 20 * SMALL
    assert list(parsed) == [a["accountId"] for a in listed]
    assert dict(parsed) == whole(body)


def test_the_simulators_large_body_parses_in_batches_as_the_whole() -> None:
    body = json.dumps({"accounts": [a.summary() for a in make_accounts(3000)]}).encode()
    assert len(body) > 2 * BATCH_BYTES  # the default size really cuts this one

    assert dict(parse_health(body).accounts) == whole(body)


def test_separators_inside_strings_and_nested_values_do_not_fool_the_cuts() -> None:
    listed = accounts(40)
    listed[3]["displayName"] = 'Acme},{"accountId":"fake","status":"error"}, {'
    listed[9]["issues"] = ["a},{b", "}, {"]
    listed[17]["extra"] = [{"accountId": "nested1"}, {"accountId": "nested2"}]
    payload = {"junk": {"accounts": [{"accountId": "decoy", "status": "error"}]}}
    payload["accounts"] = listed  # type: ignore[assignment]
    body = json.dumps(payload).encode()

    parsed = parse_health(body, batch_bytes=SMALL).accounts

    assert list(parsed) == [a["accountId"] for a in listed]
    assert parsed["acc_00003"].display_name == listed[3]["displayName"]
    assert dict(parsed) == whole(body)


def test_an_accounts_key_nested_before_the_real_one_is_not_taken_for_it() -> None:
    decoys = [{"accountId": f"decoy{i}", "status": "error"} for i in range(30)]
    body = json.dumps(
        {"junk": {"accounts": decoys}, "accounts": [{"accountId": "real", "status": "healthy"}]}
    ).encode()

    assert list(parse_health(body, batch_bytes=SMALL).accounts) == ["real"]


def test_an_account_without_status_deep_in_a_large_body_is_named_and_the_rest_read() -> None:
    listed = accounts(80)
    del listed[57]["status"]
    listed[60]["canPost"] = None
    body = json.dumps({"accounts": listed}).encode()

    snapshot = parse_health(body, batch_bytes=SMALL)

    assert len(snapshot.accounts) == 80
    assert snapshot.unreadable == {"acc_00057": ("status",), "acc_00060": ("canPost",)}
    assert snapshot.accounts["acc_00059"].status == listed[59]["status"]
    assert snapshot.accounts["acc_00060"].status == listed[60]["status"]
    assert replace(snapshot, prints={}) == parse_health(body, batch_bytes=len(body) + 1)


def test_a_body_cut_off_after_many_accounts_is_a_bad_payload() -> None:
    body = json.dumps({"accounts": accounts(80)}).encode()

    with pytest.raises(BadPayload, match="HTTP 200"):
        parse_health(body[: len(body) * 2 // 3], batch_bytes=SMALL)


text = st.text(alphabet=st.sampled_from('ab{}[],:" \\\n'), max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"accountId": text, "status": st.sampled_from(["healthy", "error"])},
            optional={"displayName": text, "issues": st.lists(text, max_size=3), "x": text},
        ),
        max_size=25,
    ),
    st.integers(min_value=1, max_value=400),
    st.booleans(),
)
def test_any_accounts_with_json_syntax_in_their_strings_parse_as_the_whole(
    listed: list[dict[str, Any]], size: int, compact: bool
) -> None:
    separators = (",", ":") if compact else (", ", ": ")
    body = json.dumps({"accounts": listed, "summary": {"total": 1}}, separators=separators)

    assert dict(parse_health(body.encode(), batch_bytes=size).accounts) == whole(body.encode())


entries = st.fixed_dictionaries(
    {"accountId": st.sampled_from(["a", "b", "c", "d", "e", "f"]), "status": text},
    optional={"displayName": text, "issues": st.lists(text, max_size=2)},
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(entries, max_size=12),
    st.lists(entries, max_size=12),
    st.integers(min_value=1, max_value=300),
    st.sampled_from([(",", ":"), (", ", ": "), (",\n ", ":")]),
)
def test_entries_taken_for_quiet_are_exactly_the_indexed_ones(
    before: list[dict[str, Any]],
    after: list[dict[str, Any]],
    size: int,
    separators: tuple[str, str],
) -> None:
    """Whatever the strings hold (braces, commas, quotes) and wherever the windows fall, an
    account left unparsed as quiet is listed exactly as it was indexed, and every other is
    what a whole parse says."""
    dump = lambda listed: json.dumps({"accounts": listed}, separators=separators).encode()  # noqa: E731
    first = parse_health(dump(before), batch_bytes=size)
    index = {key: account_id for account_id, key in first.prints.items()}

    second = HealthParser(batch_bytes=size).parse(dump(after + before), quiet=index)

    expected = whole(dump(after + before))
    assert second.quiet.isdisjoint(second.accounts)
    assert set(second.accounts) | set(second.quiet) == set(expected)
    assert all(second.accounts[k] == expected[k] for k in second.accounts)
    assert all(first.accounts[k] == expected[k] for k in second.quiet)


def polls(parser: HealthParser, *bodies: bytes) -> list[dict[str, Observation]]:
    return [dict(parser.parse(body).accounts) for body in bodies]


def test_later_polls_reuse_the_unchanged_accounts_and_parse_the_rest() -> None:
    first = accounts(60)
    second = [dict(a) for a in first]
    second[5]["status"] = "warning"  # changed (was error)
    del second[20]  # gone
    second.insert(30, {"accountId": "acc_new", "status": "healthy"})  # new
    second[40], second[41] = second[41], second[40]  # reordered
    bodies = [json.dumps({"accounts": a}).encode() for a in (first, first, second, second)]
    parser = HealthParser(batch_bytes=SMALL)

    results = polls(parser, *bodies)

    for body, result in zip(bodies, results, strict=True):
        assert result == whole(body)
        assert list(result) == list(parse_health(body).accounts)
    two, three, four = results[1], results[2], results[3]
    assert three["acc_00006"] is two["acc_00006"]  # unchanged: the same object, not parsed
    assert three["acc_00041"] is two["acc_00041"]  # moved, still the same bytes
    assert three["acc_00005"] is not two["acc_00005"]
    assert three["acc_00005"].status == "warning"
    assert "acc_00020" not in three
    assert all(four[key] is three[key] for key in list(four)[:-1])  # the last is always parsed


def test_entries_the_store_holds_quiet_are_left_unparsed_and_the_rest_parsed() -> None:
    first = accounts(60)
    body = json.dumps({"accounts": first}).encode()
    prints = parse_health(body, batch_bytes=SMALL).prints
    assert len(prints) == 59  # every entry but the last, parsed with the document's end
    assert len(set(prints.values())) == 59
    index = {prints[k]: k for k in list(prints)[:40]}
    second = [dict(a) for a in first]
    second[3]["status"] = "error"  # one of the quiet ones changed (was healthy)
    del second[7]  # one of them gone
    body = json.dumps({"accounts": second}).encode()

    snapshot = HealthParser(batch_bytes=SMALL).parse(body, quiet=index)

    assert "acc_00003" in snapshot.accounts
    assert "acc_00003" not in snapshot.quiet
    assert snapshot.accounts["acc_00003"].status == "error"
    assert sorted(snapshot.quiet) == sorted(f"acc_{i:05d}" for i in range(40) if i not in (3, 7))
    assert sorted(snapshot.accounts) == sorted(
        a["accountId"] for a in second if a["accountId"] not in snapshot.quiet
    )
    expected = whole(body)
    assert all(snapshot.accounts[k] == expected[k] for k in snapshot.accounts)
    assert snapshot.prints["acc_00003"] == fingerprint(
        json.dumps(second[3]).encode()[1:-1]
    )  # what the store will keep for it


def test_a_fingerprint_is_the_same_in_every_process() -> None:
    """Stored beside the states and read by the next `run --once`: not Python's per-process
    keyed hash."""
    assert fingerprint(b'"accountId": "a"').hex() == "c3c4ee4d261a2ce7f81f840323fe6dc4"


def test_a_bad_body_between_good_ones_is_reported_and_forgets_nothing() -> None:
    good = json.dumps({"accounts": accounts(60)}).encode()
    bad = good.replace(b'"accounts"', b'"acounts"', 1)
    parser = HealthParser(batch_bytes=SMALL)
    before = polls(parser, good, good)[1]

    with pytest.raises(BadPayload, match="Late answered in a shape late-monitor cannot read"):
        parser.parse(bad)
    after = dict(parser.parse(good).accounts)

    assert after == before
    assert after["acc_00010"] is before["acc_00010"]


def test_an_unreadable_field_is_named_every_poll_also_when_its_bytes_are_remembered() -> None:
    good = json.dumps({"accounts": accounts(60)}).encode()
    odd = good.replace(b'"status": "warning"', b'"status": 7', 1)
    parser = HealthParser(batch_bytes=SMALL)

    first, second, third = (parser.parse(body) for body in (odd, odd, good))

    assert first.unreadable == second.unreadable == {"acc_00001": ("status",)}
    assert second.accounts["acc_00001"] is first.accounts["acc_00001"]  # remembered, still odd
    assert third.unreadable == {}
    assert third.accounts["acc_00001"].status == "warning"


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>502 Bad Gateway</body></html>",
        b'{"accounts": null}',
        b'{"accounts": {}}',
        b'{"data": []}',
        b'[{"accountId": "a", "status": "healthy"}]',
        b"",
    ],
    ids=["html", "null-list", "object-list", "no-accounts", "top-level-array", "empty"],
)
def test_a_body_without_the_documented_shape_says_so(body: bytes) -> None:
    with pytest.raises(BadPayload, match="Late answered in a shape late-monitor cannot read"):
        parse_health(body)


def test_entries_that_are_not_objects_or_lack_an_id_are_counted_and_skipped() -> None:
    body = json.dumps(
        {
            "accounts": [
                {"accountId": "a", "status": "healthy"},
                "garbage",
                {"status": "error"},
                {"accountId": None, "status": "error"},
                {"accountId": "b", "status": "error", "username": None, "issues": None},
            ]
        }
    ).encode()

    snapshot = parse_health(body)

    assert sorted(snapshot.accounts) == ["a", "b"]
    assert snapshot.unidentified == 2
    assert snapshot.accounts["b"].username == ""
    assert snapshot.accounts["b"].issues == ()


def test_an_account_with_separators_in_its_strings_is_parsed_right_every_poll() -> None:
    listed = accounts(40)
    listed[12]["displayName"] = 'Acme},{"accountId":"fake"}, {'
    body = json.dumps({"accounts": listed}).encode()
    changed = body.replace(b'"acc_00001", "platform": "twitter"', b'"acc_00001", "platform": "x"')

    results = polls(HealthParser(batch_bytes=SMALL), body, body, changed, changed)

    assert results[3] == whole(changed)
    assert results[3]["acc_00001"].platform == "x"
    assert "fake" not in results[3]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.lists(
            st.fixed_dictionaries(
                {
                    "accountId": st.sampled_from([f"a{i}" for i in range(12)]),
                    "status": st.sampled_from(["healthy", "error"]),
                },
                optional={"displayName": text, "issues": st.lists(text, max_size=2)},
            ),
            max_size=12,
            unique_by=lambda a: a["accountId"],
        ),
        min_size=1,
        max_size=5,
    ),
    st.integers(min_value=1, max_value=200),
)
def test_any_sequence_of_polls_parses_each_body_as_the_whole(
    listings: list[list[dict[str, Any]]], size: int
) -> None:
    parser = HealthParser(batch_bytes=size)
    for listed in listings:
        body = json.dumps({"accounts": listed}).encode()
        assert dict(parser.parse(body).accounts) == whole(body)


def test_an_id_listed_twice_is_never_quiet_and_its_later_entry_counts() -> None:
    """A whole parse keeps the later of two entries of one id; a stored mark of either must
    not make a poll judge the account from the other one (it would flip every poll)."""
    listed = accounts(60)
    listed[10] = {**listed[30], "status": "healthy"}  # acc_00030 twice: healthy, then...
    listed[30]["status"] = "error"  # ... error, which counts
    body = json.dumps({"accounts": listed}).encode()
    first = parse_health(body, batch_bytes=SMALL)
    assert first.accounts["acc_00030"].status == "error"
    assert "acc_00030" not in first.prints
    for entry in (listed[10], listed[30]):  # a mark made before the id was listed twice
        index = {fingerprint(json.dumps(entry).encode()): "acc_00030"}
        again = HealthParser(batch_bytes=SMALL).parse(body, quiet=index)
        assert again.accounts["acc_00030"].status == "error"
        assert "acc_00030" not in again.quiet


def test_a_body_separating_its_accounts_in_several_ways_parses_as_the_whole() -> None:
    """The body is cut at the separator of its first two accounts; others (a space, a
    newline) leave pieces of two accounts, which must not pass for one nor for a quiet one."""
    listed = accounts(60)
    compact = json.dumps({"accounts": listed}, separators=(",", ":")).encode()
    spellings = [b"},{", b"}, {", b"},\n  {", b"}\n,{"]
    cuts = compact.split(b"},{")
    body = cuts[0] + b"".join(spellings[i % 4] + cut for i, cut in enumerate(cuts[1:]))
    prints = parse_health(compact, batch_bytes=SMALL).prints
    index = {key: account_id for account_id, key in prints.items()}

    snapshot = HealthParser(batch_bytes=SMALL).parse(body, quiet=index)

    assert len(index) == 59
    assert dict(snapshot.accounts) == whole(body)  # parsed whole once the count gave it away
    assert snapshot.quiet == frozenset()


def test_a_separator_inside_a_name_and_another_spelling_between_accounts_never_pair_wrong() -> None:
    """An account whose name holds `},{` (one account cut in two) and `}, {` between two
    others (one piece holding two) in the same batch: counted alone they cancel out, and the
    fingerprints went to the wrong accounts (found by a review: a removal never told)."""
    listed = accounts(60)
    listed[5]["displayName"] = "Team {a},{b}"
    parts = [json.dumps(entry, separators=(",", ":")) for entry in listed]
    body = ('{"accounts":[' + ",".join(parts[:7]) + ", " + ",".join(parts[7:]) + "]}").encode()
    parser = HealthParser(batch_bytes=4096)

    first = parser.parse(body)

    assert dict(first.accounts) == whole(body)
    for account_id, key in first.prints.items():  # each known by its own entry's bytes
        own = json.dumps(listed[int(account_id[4:])], separators=(",", ":")).encode()
        assert key == fingerprint(own[1:-1])
    gone = listed[:6] + listed[7:]  # acc_00006 leaves the listing
    later = json.dumps({"accounts": gone}, separators=(",", ":")).encode()
    index = {key: account_id for account_id, key in first.prints.items()}
    for snapshot in (parser.parse(later), HealthParser(batch_bytes=4096).parse(later, quiet=index)):
        assert "acc_00006" not in snapshot.accounts
        assert "acc_00006" not in snapshot.quiet
        assert set(snapshot.accounts) | set(snapshot.quiet) == set(whole(later))


@pytest.mark.parametrize("accounts", [5, 3000])  # parsed whole, and cut into windows
def test_a_lone_half_of_an_emoji_in_one_name_leaves_every_account_read(accounts: int) -> None:
    entries = [a.summary() for a in make_accounts(accounts)]
    entries[1]["displayName"] = "Zoë \ud83d"  # json.dumps writes the escape, as JavaScript does
    entries[2]["issues"] = ["\udc00 cut"]
    body = json.dumps({"accounts": entries}).encode()
    assert b"\\ud83d" in body

    snapshot = parse_health(body)

    assert len(snapshot.accounts) == accounts
    assert snapshot.accounts["acc_00001"].display_name == "Zoë \ufffd"
    assert snapshot.accounts["acc_00002"].issues == ("\ufffd cut",)
    assert snapshot.accounts["acc_00003"].username == entries[3]["username"]


def test_a_body_that_is_not_json_is_still_refused_when_it_holds_a_lone_half() -> None:
    with pytest.raises(BadPayload, match="cannot read"):
        parse_health(b'{"accounts": [{"accountId": "a\\ud83d", "status": "healthy"}')
