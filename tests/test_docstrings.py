"""The public API's docstrings: every parameter documented, every example run.

A numpydoc ``Parameters`` section lists each parameter on a line ``name : type`` (or
``name1, name2 : type``, or a bare ``**kwargs``) at the section's own indentation, its
description indented below. The parser here reads exactly that; it does not need
numpydoc (scikit-learn's ``check_docstring_parameters`` does, and checks only
scikit-learn's own functions).
"""

import doctest
import inspect
import re

import pytest

import fastmlp
from fastmlp import notebook

ESTIMATORS = [fastmlp.MLPClassifier, fastmlp.MLPRegressor]
ESTIMATOR_METHODS = ["fit", "partial_fit", "predict", "predict_proba", "predict_log_proba",
                     "score"]


def _sections(doc):
    """``{section title: [its lines, dedented to the section's indentation]}``."""
    lines = inspect.cleandoc(doc).splitlines()
    sections, title = {}, None
    for i, line in enumerate(lines):
        underline = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and re.fullmatch(r"-{3,}", underline.strip()) and (
            len(underline.strip()) == len(line.strip())
        ):
            title = line.strip()
            sections[title] = []
        elif title is not None and not re.fullmatch(r"-{3,}", line.strip()):
            sections[title].append(line)
    return sections


def documented_parameters(doc):
    """The names the docstring's ``Parameters`` section documents, in order."""
    names = []
    for line in _sections(doc or "").get("Parameters", []):
        if not line.strip() or line[0].isspace():  # a description, or a blank line
            continue
        head = line.split(" : ", 1)[0]
        names.extend(name.strip() for name in head.split(","))
    return names


def signature_parameters(function):
    """The names a numpydoc ``Parameters`` section should list: ``*args`` and
    ``**kwargs`` with their stars; no ``self``."""
    names = []
    for parameter in inspect.signature(function).parameters.values():
        if parameter.name == "self":
            continue
        stars = {inspect.Parameter.VAR_POSITIONAL: "*",
                 inspect.Parameter.VAR_KEYWORD: "**"}.get(parameter.kind, "")
        names.append(stars + parameter.name)
    return names


def _notebook_functions():
    return [
        function for name, function in inspect.getmembers(notebook, inspect.isfunction)
        if not name.startswith("_") and function.__module__ == notebook.__name__
    ]


FUNCTIONS = [
    fastmlp.warmup,
    fastmlp.profile,
    fastmlp.save,
    fastmlp.load,
    fastmlp.to_onnx,
    fastmlp.loss_and_gradients,
    *_notebook_functions(),
]


def _name(function):
    return getattr(function, "__qualname__", str(function))


def test_the_parser_reads_numpydoc_sections():
    doc = """Summary.

    Parameters
    ----------
    a : int
        Its description, with a line that looks like ``b : int`` but is indented.
    c, d : float, default=1.0
    **kwargs
        Passed on.

    Returns
    -------
    e : int
    """
    assert documented_parameters(doc) == ["a", "c", "d", "**kwargs"]
    assert documented_parameters("No sections.") == []


def test_the_notebook_has_its_public_functions():
    names = {function.__name__ for function in _notebook_functions()}
    assert {"init_weights", "softmax", "forward", "backward", "get_gradient",
            "gradient_step", "gradient_ascent"} <= names


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_estimator_docstring_documents_every_constructor_parameter(estimator):
    documented = documented_parameters(estimator.__doc__)
    expected = signature_parameters(estimator.__init__)
    assert documented == expected  # all of them, nothing else, in the signature's order


def _missing_and_extra(function):
    documented = documented_parameters(function.__doc__)
    expected = signature_parameters(function)
    return ([name for name in expected if name not in documented],
            [name for name in documented if name not in expected])


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_estimator_docstring_documents_the_fitted_attributes(estimator):
    documented = documented_parameters(
        "\n".join(["Parameters", "----------", *_sections(estimator.__doc__)["Attributes"]])
    )
    expected = {"loss_", "best_loss_", "loss_curve_", "validation_scores_",
                "best_validation_score_", "validation_loss_curve_", "t_", "coefs_",
                "intercepts_", "n_features_in_", "feature_names_in_", "n_iter_",
                "n_layers_", "n_outputs_", "out_activation_"}
    if estimator is fastmlp.MLPClassifier:
        expected.add("classes_")
    assert set(documented) == expected


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("method", ESTIMATOR_METHODS)
def test_estimator_method_docstrings(estimator, method):
    if not hasattr(estimator, method):  # MLPRegressor has no predict_proba
        pytest.skip(f"{estimator.__name__} has no {method}")
    function = getattr(estimator, method)
    assert _missing_and_extra(function) == ([], [])
    assert _sections(function.__doc__).get("Returns"), f"{method} has no Returns section"


@pytest.mark.parametrize("function", FUNCTIONS, ids=_name)
def test_function_docstring_documents_every_parameter(function):
    missing, extra = _missing_and_extra(function)
    assert missing == [], f"parameters missing from {_name(function)}'s docstring"
    assert extra == [], f"{_name(function)}'s docstring documents no such parameters"


@pytest.mark.parametrize(
    "obj", [*ESTIMATORS, notebook, fastmlp.warmup],
    ids=lambda obj: getattr(obj, "__name__", str(obj)),
)
def test_docstring_examples_run(obj):
    """The examples as written, each output compared as doctest compares it (no
    timings are printed or asserted)."""
    finder = doctest.DocTestFinder(recurse=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [test for test in finder.find(obj) if test.examples]
    assert tests, f"{obj!r} has no examples"
    report = []
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
