"""The assertion every chapter's check tests share (tests/test_checks_chNN.py)."""


def assert_names_mistake(check, fn, words: str):
    """``check`` fails ``fn`` (status "failed": a diagnosed mistake, not a crash) with a message naming it;
    returns the result, for further assertions."""
    result = check(fn)
    assert result.status == "failed" and words in result.message, result.message
    return result
