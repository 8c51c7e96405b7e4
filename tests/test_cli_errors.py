"""Bad model names and keywords on the command line: one line naming the fix, exit status 2, no traceback."""

from __future__ import annotations

import pytest

import cifarnets.cli as cli


def one_line_error(capsys, argv: list[str]) -> str:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    return lines[0]


@pytest.mark.parametrize("argv, words", [
    (["info", "vgg99"], ["cifarnets info: error: unknown model 'vgg99'; did you mean", "'vgg38'"]),
    (["summary", "vgg99"], ["cifarnets summary: error: unknown model 'vgg99'; did you mean", "'vgg38'"]),
    (["rf", "nosuchnet"], ["cifarnets rf: error: unknown model 'nosuchnet'", "`cifarnets list`"]),
    (["rf", "resnet2"], ["cifarnets rf: error: unknown model 'resnet2'; did you mean", "'resnet20'"]),
    (["info", "vgg38_bn"], ["cifarnets info: error: unknown model 'vgg38_bn'", "create('vgg38', bn=True)"]),
])
def test_an_unknown_model_name_is_one_line_naming_the_closest_names(capsys, argv, words):
    line = one_line_error(capsys, argv)
    for word in words:
        assert word in line, line


@pytest.mark.parametrize("argv, words", [
    (["summary", "vgg38", "--width", "0"],
     ["cifarnets summary: error: width must be an integer >= 1, got 0", "e.g. width=32"]),
    (["summary", "resnet20", "--width", "8"],
     ["cifarnets summary: error: resnet20() got unexpected keyword argument 'width'", "valid keywords are:"]),
    (["rf", "vgg38", "--act", "relu6"], ["cifarnets rf: error: unknown act 'relu6'; use one of", "'relu'"]),
    (["summary", "vgg38", "--norm", "bachnorm"],
     ["cifarnets summary: error: unknown norm_layer 'bachnorm'; use one of", "'batchnorm'"]),
    (["summary", "vgg38", "--init", "he"], ["cifarnets summary: error: unknown init 'he'; use one of", "'kaiming'"]),
    (["rf", "vgg38", "--shortcut", "zeropad"], ["cifarnets rf: error: shortcut='zeropad'", "pass rc=True"]),
    (["summary", "vgg16", "--input-size", "16", "16"],
     ["cifarnets summary: error: vgg16 has a fixed classifier head", "Resize or pad the images to 32x32"]),
])
def test_a_bad_keyword_or_input_size_is_one_line_naming_the_fix(capsys, argv, words):
    line = one_line_error(capsys, argv)
    for word in words:
        assert word in line, line


def test_gradflow_usage_errors_are_one_line(capsys, tmp_path):
    line = one_line_error(capsys, ["gradflow", "--out", str(tmp_path / "x.png")])
    assert line.startswith("cifarnets gradflow: error: give a MODEL")
    assert not (tmp_path / "x.png").exists()
