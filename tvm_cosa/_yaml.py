"""YAML reading with errors that name the file."""

from pathlib import Path

import yaml

from .errors import InputError


def load_yaml(path):
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", source=path)
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise InputError(f"not valid YAML: {err}", source=path) from None
    if data is None:
        raise InputError("the file is empty", source=path)
    return data
