"""Compiled message templates kept between processes, as Python keeps a module's bytecode.

A `run --once` from cron that has a message to send otherwise parses and compiles its
templates again in every process (~12 ms here, of a ~1.1 s start). Imported with Jinja2, when
a message is first written.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys

from jinja2 import Environment
from jinja2.bccache import Bucket, FileSystemBytecodeCache

PATTERN = "late-monitor-%s.cache"


class TemplateCache(FileSystemBytecodeCache):
    """Jinja2's file cache, in Jinja2's private per-user directory (mode 0700 in the temp
    directory) unless given one, that never costs a message: a damaged entry is compiled
    again, a directory that cannot be written is no cache. Like Python's bytecode, nothing
    is written under `PYTHONDONTWRITEBYTECODE` or `-B`.

    Jinja2 keys an entry by the template's name and file and checks its source's hash; the
    code also depends on the environment's options (trim_blocks, finalize, the sandbox...),
    so the key has them too: an environment set up otherwise never gets another's code."""

    def __init__(self, directory: str | None = None) -> None:
        super().__init__(directory, PATTERN)

    def get_bucket(
        self, environment: Environment, name: str, filename: str | None, source: str
    ) -> Bucket:
        key = hashlib.sha1(  # a cache key, as Jinja2's own
            f"{_options(environment)}|{name}|{filename}".encode(), usedforsecurity=False
        ).hexdigest()
        bucket = Bucket(environment, key, self.get_source_checksum(source))
        self.load_bytecode(bucket)
        return bucket

    def load_bytecode(self, bucket: Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # unreadable, or not what Jinja2 wrote: compile from the source
            bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        if sys.dont_write_bytecode:
            return
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def _options(env: Environment) -> str:
    """What Jinja2's compiler reads of the environment besides the template's text."""
    return repr(
        (
            type(env).__module__,
            type(env).__qualname__,
            env.block_start_string,
            env.block_end_string,
            env.variable_start_string,
            env.variable_end_string,
            env.comment_start_string,
            env.comment_end_string,
            env.line_statement_prefix,
            env.line_comment_prefix,
            env.trim_blocks,
            env.lstrip_blocks,
            env.newline_sequence,
            env.keep_trailing_newline,
            env.optimized,
            env.is_async,
            env.autoescape if isinstance(env.autoescape, bool) else "callable",
            env.finalize is not None and _passes(env.finalize),
            sorted(env.extensions),
        )
    )


def _passes(function: object) -> str:
    # the compiled call of `finalize` differs by what it is passed (@pass_context ...)
    return str(getattr(function, "jinja_pass_arg", "value"))


def template_cache() -> TemplateCache | None:
    """The cache in Jinja2's directory; None when no private directory can be had there."""
    try:
        return TemplateCache()
    except (OSError, RuntimeError):  # Jinja2 raises RuntimeError for an unsafe directory
        return None
