"""The library's progress bar: quiet until the end in logs, redrawn in place on a terminal."""

import io

from pulse.progress import progress_bar


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_in_a_log_the_bar_is_one_line_at_the_end():
    log = io.StringIO()
    with progress_bar(200, "fit", stream=log) as bar:
        for _ in range(4):
            bar.update(50)
        assert log.getvalue() == ""
    assert log.getvalue() == "fit  [" + "#" * 30 + "]  100%  200/200\n"


def test_on_a_terminal_it_redraws_in_place_and_ends_the_line():
    tty = Terminal()
    with progress_bar(None, "download", stream=tty) as bar:
        bar.update(1500)
    text = tty.getvalue()
    assert text.startswith("\rdownload  0") and text.endswith("\rdownload  1,500\n") and text.count("\n") == 1


def test_a_failed_operation_leaves_no_finished_line_in_a_log():
    log = io.StringIO()
    try:
        with progress_bar(10, "fit", stream=log) as bar:
            bar.update(3)
            raise RuntimeError
    except RuntimeError:
        pass
    assert log.getvalue() == ""
