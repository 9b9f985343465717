"""Every test records MLflow runs into one temporary store, never the project's mlflow.db."""

import os

import pytest

from taskcodec import tracking


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    saved = {key: os.environ.get(key) for key in (tracking.URI_ENV, tracking.PARENT_ENV)}
    os.environ[tracking.URI_ENV] = uri
    os.environ.pop(tracking.PARENT_ENV, None)
    yield uri
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
