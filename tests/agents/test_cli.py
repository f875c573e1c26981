from deepatlas.cli import main


def test_agent_and_ask_reject_bad_input(tmp_path, capsys):
    assert main(["agent", "  "]) == 2
    assert "the task is empty" in capsys.readouterr().err
    assert main(["agent", "--corpus", str(tmp_path / "nope"), "2+2?"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["ask", ""]) == 2
    assert "the question is empty" in capsys.readouterr().err
    assert main(["ask", "--corpus", str(tmp_path), "Who?"]) == 2
    assert "no .txt or .md files" in capsys.readouterr().err
    (tmp_path / "bin.txt").write_bytes(b"\x00\xff")
    assert main(["ask", "--corpus", str(tmp_path), "Who?"]) == 2
    assert "binary or empty" in capsys.readouterr().err
