"""Standard TFDS names go through the same entry point and fail clearly when unavailable."""

import pytest

from kd_jax import data


def test_unprepared_standard_dataset_explains_how_to_prepare(tmp_path):
  with pytest.raises(data.DatasetUnavailableError) as error:
    data.get_source("cifar10", "train", data_dir=str(tmp_path), download=False)
  message = str(error.value)
  assert "cifar10" in message and "not prepared" in message
  assert "tfds build cifar10 --file_format=array_record" in message and "data_dir" in message


def test_manual_standard_dataset_mentions_manual_dir(tmp_path):
  with pytest.raises(data.DatasetUnavailableError, match="--manual_dir"):
    data.get_source("imagenet2012", "validation", data_dir=str(tmp_path), download=False)


def test_glue_config_name_is_accepted(tmp_path):
  with pytest.raises(data.DatasetUnavailableError, match="glue/sst2"):
    data.get_source("glue/sst2", "train", data_dir=str(tmp_path), download=False)


def test_unknown_name_lists_kd_jax_datasets(tmp_path):
  with pytest.raises(KeyError, match="rotten_tomatoes"):
    data.get_source("no_such_dataset_xyz", "train", data_dir=str(tmp_path), download=False)


def test_bad_split_lists_available_ones(data_dir):
  with pytest.raises(ValueError, match="validation"):
    data.get_source("mnist5k", "training", data_dir=data_dir)


def test_source_indexing_errors(data_dir):
  source = data.get_source("mnist5k", "test", data_dir=data_dir)
  with pytest.raises(IndexError, match="out of range"):
    source[len(source)]
  with pytest.raises(TypeError, match="int"):
    source["0"]


def test_offline_default_fails_fast_without_download(tmp_path, monkeypatch):
  from kd_jax.data import sources

  monkeypatch.setattr(sources, "_internet_reachable", lambda: False)  # As on an offline machine.
  with pytest.raises(data.DatasetUnavailableError, match="no internet"):
    data.get_source("cifar100", "test", data_dir=str(tmp_path))  # download=None: probe first.


def test_prepare_cli_reports_splits(data_dir, capsys):
  from kd_jax.data import prepare

  prepare.main(["mnist5k", "--data_dir", data_dir])
  assert "mnist5k: {" in capsys.readouterr().out
