"""A fast validated decoder: records read into structs that mirror the pydantic model.

Validating a demo-shaped record with pydantic builds a dozen model instances and costs more than
evaluating it. `RecordDecoder(Model)` derives msgspec structs from the pydantic model (the model
stays the one definition): one struct per model, with the model's name, its fields under the same
names, the same defaults, the same methods (the model's plain mixin bases, e.g.
`auditor.model.ResourceMethods`), and after decoding the same values (dates and times are parsed
by pydantic itself). msgspec decodes and type-checks a line into them in one pass.

The struct check is never looser than pydantic's: a text it does not accept (a value pydantic would
coerce, a malformed value, anything unusual) makes `decode` return None, and the caller reads the
line with orjson and pydantic, which give the record or the error message. Texts where the two JSON
parsers differ take that path too: a repeated key (both keep the last silently; the line must be
the struct's encoding or have as many colons, `colons_agree`), an integer beyond 64 bits (orjson
reads a float), a float with an exponent (msgspec writes "1e16" where orjson writes "1e+16").

Where auditor was installed with a C compiler, `auditor._unambiguous` proves in one pass that a line
holds none of those texts (`unambiguous_object`); `decode(text, texts=False)` then skips its own
proofs (a re-encoding, a scan for long numbers), lets msgspec fill absent fields (nothing asks which
were given but `track_given`), and leaves the kept list's items' `Any` values as raw JSON
(`msgspec.Raw`, still checked as JSON), as readers of that form take the items from the kept line.
Without the module the proofs run instead; the verdicts are the same.

A struct has no pydantic API (`model_dump`, `model_copy`, ...) except `model_fields_set` on the
models named in `track_given`; `auditor check` evaluates them, and tests/test_fast_path.py proves
its findings byte-identical to those of pydantic records. Derivation refuses, at import, whatever
it cannot mirror exactly: validators, aliases, an unknown constraint or type, a mutable default.
"""

from __future__ import annotations

import datetime as dt
import enum
import types
from collections.abc import Callable
from functools import cached_property
from typing import Annotated, Any, Generic, Literal, TypeVar, Union, get_args, get_origin

import annotated_types
import msgspec
import orjson
from msgspec.structs import force_setattr
from pydantic import BaseModel, StringConstraints, TypeAdapter, ValidationError

try:
    from auditor._unambiguous import unambiguous_object
except ImportError:  # built at install where a C compiler is present (hatch_build.py)
    UNAMBIGUOUS: Callable[[bytes], bool] | None = None
else:
    UNAMBIGUOUS = unambiguous_object

ModelT = TypeVar("ModelT", bound=BaseModel)

_ESCAPED_COLON = b"\\u003"
# Digits as "0", everything else as ".": 19 zeros in a row may be an integer orjson reads as a float.
_DIGITS = bytes(48 if 48 <= byte <= 57 else 46 for byte in range(256))
_LONG_NUMBER = b"0" * 19
# pydantic's own validators (without TypeAdapter's Python wrapper).
_PARSERS: dict[Any, Callable[[Any], Any]] = {
    dt.datetime: TypeAdapter(dt.datetime).validator.validate_python,
    dt.date: TypeAdapter(dt.date).validator.validate_python,
}


def _spelled_alike(text: bytes, encoded: bytes) -> bool:
    """Whether `text` is `encoded` (a struct's encoding), but for a final newline."""
    return len(text) - len(encoded) in (0, 1) and text.startswith(encoded)


def _proves_no_repeated_keys(text: bytes, encoded: bytes) -> bool:
    """Whether `encoded`, the struct `text` decoded to, shows `text` kept every pair it holds."""
    return _spelled_alike(text, encoded) or colons_agree(text, encoded)


def colons_agree(text: bytes, rewritten: bytes) -> bool:
    """True when `rewritten`, a parser's re-serialisation of the JSON `text`, provably keeps every
    key/value pair of it (JSON parsers keep the last of repeated keys silently, so a dropped pair
    is a repeated key): outside strings a colon only follows a key, and colons in strings are
    written literally, so without colons spelled as escapes (`\\u003a`) the counts agree unless a
    pair was dropped. False means "not proven", not "repeated"."""
    return _ESCAPED_COLON not in text and text.count(b":") == rewritten.count(b":")


class _Refused(Exception):
    """The fast path does not decide this text; pydantic does."""


def _float(literal: str) -> float:
    if "e" in literal or "E" in literal:
        raise _Refused  # kept texts must be spelled as orjson spells them
    return float(literal)


class RecordDecoder(Generic[ModelT]):
    """Decodes one JSON object into the struct mirroring `model`, or returns None (pydantic decides).

    `texts_of` names a list-of-models field whose items' JSON texts the record keeps (through the
    model's `keep_evidence_texts`), each exactly ``orjson.dumps`` of the item as orjson reads it,
    so findings need not serialize them again; `decode(text, texts=False)` keeps the line instead
    (`keep_evidence_line`), for readers that do not copy the items. `track_given` names the models
    whose readers ask which fields were given (`model_fields_set`). `unambiguous` proves a line
    free of the texts the parsers read differently (default: `auditor._unambiguous`, if built).
    """

    def __init__(
        self,
        model: type[ModelT],
        *,
        texts_of: str,
        track_given: frozenset[type[BaseModel]] = frozenset(),
        unambiguous: Callable[[bytes], bool] | None = UNAMBIGUOUS,
    ) -> None:
        self._item_model = _list_item_model(model.model_fields[texts_of].annotation)
        self._model, self._track_given, self._texts_of = model, track_given, texts_of
        struct, self._finish = _Deriver(track_given).derive(model)
        self._decoder = msgspec.json.Decoder(struct, float_hook=_float)
        self._unambiguous = unambiguous
        self._encode = msgspec.json.Encoder().encode
        self._texts_key = b',"' + texts_of.encode() + b'":['

    def decode(self, text: bytes, *, texts: bool = True) -> ModelT | None:
        """The struct `text` holds (typed as the model it mirrors), or None when pydantic must
        decide, which includes every bad text. `texts`: keep the kept list's item texts, else the
        line itself."""
        if not texts and self._unambiguous is not None and self._unambiguous(text):
            return self._decode_proven(text)
        if _LONG_NUMBER in text.translate(_DIGITS):
            return None
        encode = self._encode
        try:
            record: Any = self._decoder.decode(text)
        except (msgspec.DecodeError, RecursionError, _Refused):
            return None
        # Absent fields are still UNSET, so the struct encodes to exactly the pairs it was given:
        # the text itself when it is compact and in field order (as auditor writes it), else a
        # text with as many colons unless a repeated key was dropped. For the texts, the kept list
        # is encoded item by item, the rest of the record once.
        if not texts:
            if not (_proves_no_repeated_keys(text, encode(record)) and _finished(record, self._finish)):
                return None
            record.keep_evidence_line(text)
            line_kept: ModelT = record
            return line_kept
        items = getattr(record, self._texts_of)
        given = items is not msgspec.UNSET
        item_texts = [encode(item) for item in items] if given else []
        setattr(record, self._texts_of, msgspec.UNSET)
        head = encode(record)
        if given:
            setattr(record, self._texts_of, items)
            key = self._texts_key if len(head) > 2 else self._texts_key[1:]
            head = b"".join((head[:-1], key, b",".join(item_texts), b"]}"))
        kept = item_texts
        if not _spelled_alike(text, head):
            if not colons_agree(text, head):
                return None  # not proven free of repeated keys
            # Not in auditor's spelling (key order, spaces, escapes, number forms): the texts are
            # as orjson reads and writes the items.
            kept = [orjson.dumps(item) for item in orjson.loads(text).get(self._texts_of) or ()]
        if not _finished(record, self._finish):
            return None
        record.keep_evidence_texts(kept)
        decoded: ModelT = record
        return decoded

    @cached_property
    def _line_reader(self) -> tuple[msgspec.json.Decoder[Any], Finish]:
        """The decoder of proven lines read with the line kept (derived on first use, as only
        `check --evidence reference` reads them): the items' payloads stay raw JSON."""
        deriver = _Deriver(self._track_given, raw_any_in=self._item_model, native_defaults=True)
        struct, finish = deriver.derive(self._model)
        return msgspec.json.Decoder(struct), finish

    def _decode_proven(self, text: bytes) -> ModelT | None:
        """`decode(text, texts=False)` of a text `unambiguous` proved: no proof left to make."""
        decoder, finish = self._line_reader
        try:
            record: Any = decoder.decode(text)
        except (msgspec.DecodeError, RecursionError):
            return None
        if not _finished(record, finish):
            return None
        record.keep_evidence_line(text)
        decoded: ModelT = record
        return decoded


def _finished(record: Any, finish: Finish) -> bool:
    """Finish `record`; False when pydantic refuses a date or time (its path gives the message)."""
    try:
        finish(record)
    except ValidationError:
        return False
    return True


def _list_item_model(annotation: Any) -> type[BaseModel]:
    args = get_args(annotation)
    if get_origin(annotation) is list and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0]
    raise TypeError(f"texts_of needs a list of models, not {annotation!r}")


Finish = Callable[[Any], None]


class _Deriver:
    """Derives the struct mirroring each model, and the function that finishes a decoded one:
    absent fields (decoded as UNSET) get the model's defaults, dates and times are parsed by
    pydantic, private attributes and `model_fields_set` are set, nested structs are finished.
    With `native_defaults`, msgspec fills the defaults that need no finishing and private
    attributes are class defaults; `raw_any_in` keeps that model's `Any` values as raw JSON."""

    def __init__(
        self,
        track_given: frozenset[type[BaseModel]],
        *,
        raw_any_in: type[BaseModel] | None = None,
        native_defaults: bool = False,
    ) -> None:
        self.track_given = track_given
        self.raw_any_in = raw_any_in  # this model's `Any` values are left as raw JSON
        # msgspec fills absent fields itself where nothing needs the given fields told apart (no
        # re-encoding proof, no `model_fields_set`) and the default needs no finishing.
        self.native_defaults = native_defaults
        self.derived: dict[type[BaseModel], tuple[type[msgspec.Struct], Finish | None]] = {}

    def derive(self, model: type[BaseModel]) -> tuple[type[msgspec.Struct], Finish]:
        """The struct mirroring `model` and its finishing function."""
        struct, finish = self._derived(model)
        return struct, finish or (lambda record: None)

    def _derived(self, model: type[BaseModel]) -> tuple[type[msgspec.Struct], Finish | None]:
        known = self.derived.get(model)
        if known is None:
            known = self.derived[model] = self._derive(model)
        return known

    def _derive(self, model: type[BaseModel]) -> tuple[type[msgspec.Struct], Finish | None]:
        name = model.__name__
        decorators = model.__pydantic_decorators__
        if decorators.validators or decorators.field_validators or decorators.model_validators:
            raise TypeError(f"{name}: validators cannot be mirrored")
        if decorators.root_validators or decorators.computed_fields:
            raise TypeError(f"{name}: validators and computed fields cannot be mirrored")
        extra = model.model_config.get("extra")
        if extra not in (None, "forbid", "ignore"):
            raise TypeError(f"{name}: extra={extra!r} cannot be mirrored")
        frozen = bool(model.model_config.get("frozen"))
        tracked = model in self.track_given
        scope: dict[str, Any] = {"UNSET": msgspec.UNSET, "put": force_setattr}
        body: list[str] = []
        fields: list[tuple[str, Any, Any]] = []
        for position, (field_name, field) in enumerate(model.model_fields.items()):
            where = f"{name}.{field_name}"
            if field.alias not in (None, field_name) or field.validation_alias is not None:
                raise TypeError(f"{where}: aliases cannot be mirrored")
            struct_type, finish_value = self._type(
                field.annotation, field.metadata, where, raw=model is self.raw_any_in
            )
            value = f"v{position}"
            store = f"put(s, {field_name!r}, {{}})" if frozen else f"s.{field_name} = {{}}"
            work: list[str] = []
            if finish_value is not None:
                work = _finishing(finish_value, value, store, "    ", scope)
                if _optional(field.annotation):
                    work = [f"    if {value} is not None:", *("    " + line for line in work)]
            if field.is_required():
                fields.append((field_name, struct_type, msgspec.NODEFAULT))
                if work:
                    body += [f"    {value} = s.{field_name}", *work]
                continue
            default = _default(field, where)
            if self.native_defaults and not tracked and _default_needs_no_finishing(default, work, field):
                made_default = (
                    default.value
                    if isinstance(default, _Constant)
                    else msgspec.field(default_factory=default)
                )
                fields.append((field_name, struct_type, made_default))
                if work:
                    body += [f"    {value} = s.{field_name}", *work]
                continue
            fields.append((field_name, Union[struct_type, msgspec.UnsetType], msgspec.UNSET))  # noqa: UP007
            scope[f"default{position}"] = default
            made = f"default{position}.value" if isinstance(default, _Constant) else f"default{position}()"
            body += [f"    {value} = s.{field_name}", f"    if {value} is UNSET:"]
            body.append("        " + store.format(made))
            if tracked:
                work.insert(0, f"    given.add({field_name!r})")
            if work:
                body += ["    else:", *("    " + line for line in work)]
        if tracked:
            required = sorted(n for n, f in model.model_fields.items() if f.is_required())
            body.insert(0, f"    given = set({required!r})")
            body.append("    s.model_fields_set = given")
        class_defaults: dict[str, Any] = {}
        for private, attribute in model.__private_attributes__.items():
            if attribute.default_factory is not None or not isinstance(
                attribute.default, type(None) | bool | int | str
            ):
                raise TypeError(f"{name}.{private}: only immutable private defaults can be mirrored")
            if self.native_defaults:
                class_defaults[private] = attribute.default  # read from the class until set
            else:
                body.append(f"    s.{private} = {attribute.default!r}")
        mixins = tuple(base for base in model.__bases__ if not issubclass(base, BaseModel))
        # Methods may cache in the instance (ResourceMethods.normalized_tags); private attributes
        # and `model_fields_set` are set on it.
        needs_dict = bool(mixins or tracked or model.__private_attributes__)
        struct = msgspec.defstruct(
            name,
            fields,
            bases=(*mixins, msgspec.Struct),
            namespace=class_defaults,
            kw_only=True,
            forbid_unknown_fields=extra == "forbid",
            frozen=frozen,
            dict=needs_dict,
            gc=needs_dict,  # msgspec tracks structs with a __dict__; no struct here is in a cycle
        )
        if not body:
            return struct, None
        exec("\n".join(["def finish(s):", *body]), scope)
        finish: Finish = scope["finish"]
        return struct, finish

    def _type(
        self, annotation: Any, metadata: list[Any], where: str, *, raw: bool = False
    ) -> tuple[Any, _Finishing | None]:
        """The msgspec type checking `annotation` (with pydantic `metadata`) as pydantic would, and
        how a decoded (non-null) value is finished (`_finishing`), None if it is used as decoded.
        `raw`: an `Any` value is kept as its JSON text (`msgspec.Raw`)."""
        origin = get_origin(annotation)
        if origin is Annotated:
            base, *extra = get_args(annotation)
            return self._type(base, [*extra, *metadata], where, raw=raw)
        if origin in (Union, types.UnionType):
            members = get_args(annotation)
            if len(members) != 2 or type(None) not in members:
                raise TypeError(f"{where}: only `X | None` unions can be mirrored")
            (inner,) = (m for m in members if m is not type(None))
            # Constraints bind the non-null member.
            struct_type, finish = self._type(inner, metadata, where, raw=raw)
            return struct_type | None, finish
        if metadata:
            return _constrained(annotation, metadata, where), None
        if origin is list:
            (item,) = get_args(annotation)
            struct_type, finish = self._type(item, [], where, raw=raw)
            return list[struct_type], self._container("list", finish, item, where)  # type: ignore[valid-type]
        if origin is dict:
            key, value_type = get_args(annotation)
            if key is not str:
                raise TypeError(f"{where}: only str keys can be mirrored")
            struct_type, finish = self._type(value_type, [], where, raw=raw)
            return dict[str, struct_type], self._container("dict", finish, value_type, where)  # type: ignore[valid-type]
        if origin is Literal:
            if not all(isinstance(v, str) for v in get_args(annotation)):
                raise TypeError(f"{where}: only string literals can be mirrored")
            return annotation, None
        if annotation is Any and raw:
            return msgspec.Raw, None
        if annotation is Any or annotation in (str, bool, int):
            return annotation, None
        if annotation in _PARSERS:
            return str, ("parse", _PARSERS[annotation])  # by pydantic, after the duplicate-key proof
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum) and issubclass(annotation, str):
            return annotation, None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            struct, finish_struct = self._derived(annotation)
            return struct, None if finish_struct is None else ("struct", finish_struct)
        raise TypeError(f"{where}: {annotation!r} cannot be mirrored")

    @staticmethod
    def _container(kind: str, finish: _Finishing | None, item: Any, where: str) -> _Finishing | None:
        if finish is None:
            return None
        if get_origin(item) in (Union, types.UnionType):
            raise TypeError(f"{where}: optional items cannot be mirrored")
        return (kind, finish)


# How a decoded value is finished: ("struct", finish), ("parse", parser), ("list" | "dict", item's).
_Finishing = tuple[str, Any]


def _finishing(how: _Finishing, value: str, store: str, indent: str, scope: dict[str, Any]) -> list[str]:
    """Lines finishing `value` (an expression); `store` formats the statement replacing it."""
    kind, detail = how
    name = f"h{len(scope)}"
    if kind == "struct":
        scope[name] = detail
        return [f"{indent}{name}({value})"]
    if kind == "parse":
        scope[name] = detail
        return [indent + store.format(f"{name}({value})")]
    depth = indent.count("    ")
    key, item = f"k{depth}", f"x{depth}"
    loop = f"enumerate({value})" if kind == "list" else f"{value}.items()"
    inner = _finishing(detail, item, f"{value}[{key}] = {{}}", indent + "    ", scope)
    return [f"{indent}for {key}, {item} in {loop}:", *inner]


def _optional(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


class _Constant:
    """An immutable default, shared by every record as pydantic shares it."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _default(field: Any, where: str) -> Callable[[], Any] | _Constant:
    """A field's default, made afresh for each record as pydantic makes it (a factory's), or the
    immutable constant."""
    factory = field.default_factory
    if factory is not None:
        if field.default_factory_takes_validated_data:
            raise TypeError(f"{where}: a default factory taking data cannot be mirrored")
        made: Callable[[], Any] = factory
        return made
    default = field.default
    if default is None or isinstance(default, bool | int | str | enum.Enum):
        return _Constant(default)
    raise TypeError(f"{where}: the mutable default {default!r} cannot be mirrored")


def _default_needs_no_finishing(default: Callable[[], Any] | _Constant, work: list[str], field: Any) -> bool:
    """Whether finishing a field's value (`work`) leaves its default as pydantic leaves it: there
    is no work, or it skips None or loops over an empty list or dict."""
    if not work:
        return True
    if isinstance(default, _Constant):
        return default.value is None and _optional(field.annotation)
    return default in (list, dict)


def _constrained(annotation: Any, metadata: list[Any], where: str) -> Any:
    """A str with a `^...$` pattern or an int with a lower bound, as msgspec checks them."""
    meta: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, StringConstraints) and annotation is str:
            others = {k: v for k, v in vars(item).items() if v is not None and k != "pattern"}
            pattern = item.pattern
            if others or not isinstance(pattern, str) or not _is_anchored(pattern):
                raise TypeError(f"{where}: constraint {item!r} cannot be mirrored")
            # msgspec uses Python's re, where `$` also matches before a final newline; pydantic's
            # regex engine does not, so its `$` is `\Z` here.
            meta["pattern"] = pattern[:-1] + r"\Z"
        elif isinstance(item, annotated_types.Ge) and annotation is int:
            meta["ge"] = item.ge
        else:
            raise TypeError(f"{where}: constraint {item!r} cannot be mirrored")
    return Annotated[annotation, msgspec.Meta(**meta)]


def _is_anchored(pattern: str) -> bool:
    body = pattern[1:-1]
    return pattern.startswith("^") and pattern.endswith("$") and "$" not in body and "\\" not in body
