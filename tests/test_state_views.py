"""The lazy state mappings a store caches: any run of commits laid over them reads as a dict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hypothesis import given
from hypothesis import strategies as st

from late_monitor.state import AccountState
from late_monitor.state_views import StoredStates, committed
from tests.support.state import full_state

KEYS = [f"a{i}" for i in range(12)]
keys = st.sets(st.sampled_from(KEYS))
commits = st.lists(st.tuples(keys, keys, st.sampled_from(["error", "healthy"])), max_size=8)


def stored(decoded: set[str], lazy: set[str]) -> StoredStates:
    everything = {key: full_state(key) for key in decoded | lazy}

    def fetch(ids: Sequence[str]) -> Mapping[str, AccountState]:
        return {key: everything[key] for key in ids}

    return StoredStates({k: everything[k] for k in decoded if k not in lazy}, lazy, fetch)


@given(keys, keys, commits)
def test_commits_laid_over_a_lazy_load_read_as_a_dict_of_them(
    decoded: set[str], lazy: set[str], runs: list[tuple[set[str], set[str], str]]
) -> None:
    held: Mapping[str, AccountState] = stored(decoded, lazy)
    model = {key: full_state(key) for key in decoded | lazy}
    for changed, gone, status in runs:
        changes = {key: full_state(key, status=status) for key in changed}
        held = committed(held, changes, gone)
        model.update(changes)
        for key in gone:
            model.pop(key, None)
        assert len(held) == len(model)
        assert sorted(held) == sorted(model)
        assert all(key in held for key in model)
        assert not any(key in held for key in set(KEYS) - model.keys())
    assert dict(held.items()) == model
