"""Load a YAML file into a pydantic model; every error names the file, the line and what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from orchestrator.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
MAX_YAML_BYTES = 1 << 20


def _lines(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _lines(value, (*path, key.value), out)
            out[(*path, key.value)] = key.start_mark.line + 1  # the key's line, not its value's
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _lines(item, (*path, index), out)


class TooLarge(ValueError):
    """A document whose aliases repeat more than :data:`MAX_ALIASED_VALUES` values."""


def parse(text: str) -> tuple[Any, yaml.Node | None]:
    """The data of a YAML text (PyYAML's safe loader) and its node tree, composed once and
    checked before anything is built from it:

    * a key given twice in one mapping is refused (``yaml.constructor.ConstructorError``), where
      PyYAML would keep the last without a word (a user, a workflow or an API path declared
      twice, one of them quietly lost); keys a merge (``<<``) brings in may still be
      overridden, as YAML says;
    * :class:`TooLarge` if its aliases repeat more than :data:`MAX_ALIASED_VALUES` values: each
      use of an alias is read again, here and by whatever checks the data, so a few hundred
      bytes of nested aliases are billions of values.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_nodes(node, loader)
        return (loader.construct_document(node) if node is not None else None), node
    finally:
        loader.dispose()


MAX_ALIASED_VALUES = 100_000
_MERGE = "tag:yaml.org,2002:merge"


def _check_nodes(root: yaml.Node, loader: yaml.SafeLoader) -> None:
    """Walks the tree as a reader of the data would, counting the values met again through an
    alias (a document without aliases, however large, repeats none), and looking at the keys
    of each mapping as written (before any merge is applied)."""
    seen: set[int] = set()
    repeated, todo = 0, [(root, False)]
    while todo:
        node, again = todo.pop()
        again = again or id(node) in seen
        if again:
            repeated += 1
            if repeated > MAX_ALIASED_VALUES:
                raise TooLarge(f"its aliases repeat more than {MAX_ALIASED_VALUES:,} values")
        elif isinstance(node, yaml.MappingNode):
            _unique_keys(node, loader)
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            todo.extend((part, again) for pair in node.value for part in pair)
        elif isinstance(node, yaml.SequenceNode):
            todo.extend((item, again) for item in node.value)


def _unique_keys(node: yaml.MappingNode, loader: yaml.SafeLoader) -> None:
    keys: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == _MERGE or not isinstance(key_node, yaml.ScalarNode):
            continue  # a merge may override; a collection as a key is refused when built
        key = loader.construct_object(key_node)  # type: ignore[no-untyped-call]
        if key in keys:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found the key {key!r} twice", key_node.start_mark)
        keys.add(key)


def load_yaml(path: Path) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """The data in a YAML file and the line of every key path in it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start} cannot be decoded)") \
            from None
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_YAML_BYTES} bytes")
    try:
        data, node = parse(text)
    except TooLarge as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from exc
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _lines(node, (), lines)
    return data, lines


def line_of(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int:
    """The line of the deepest known prefix of ``loc``."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def load_model(path: Path, model: type[M]) -> M:
    data, lines = load_yaml(path)
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        where = ".".join(str(part) for part in loc) or "(top level)"
        raise ConfigError(f"{path}:{line_of(lines, loc)}: {where}: {first['msg']}") from exc
