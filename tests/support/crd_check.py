"""check-jsonschema's command line, run as `python tests/support/crd_check.py ARGS`: the same as the
`check-jsonschema` script, with one mend. check-jsonschema 0.38.1 subscripts click.ParamType (a generic from
click 8.4 on) while faust-streaming holds click below 8.4 (8.3.3 here): the script then dies on import with
"type 'ParamType' is not subscriptable". Where click's ParamType cannot be subscripted, subscripting it gives the
class itself (the subscript is only a type hint there); nothing else changes."""
import sys

import click

if not hasattr(click.ParamType, "__class_getitem__"):
    click.ParamType.__class_getitem__ = classmethod(lambda cls, item: cls)     # type: ignore[attr-defined]

from check_jsonschema import main  # noqa: E402  (after the mend)

if __name__ == "__main__":
    sys.argv[0] = "check-jsonschema"
    main()
