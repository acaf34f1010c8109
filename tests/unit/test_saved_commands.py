"""The saved commands of the terminal UI: text lines, the file's two forms, order, saving."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ruroco.client.saved import (
    FILE_NAME,
    RUST_WHITESPACE,
    UNPARSABLE_SUFFIX,
    FormatError,
    LineError,
    SavedCommand,
    SavedCommands,
    check_line,
    parse_document,
    parse_lines,
    render_document,
    render_lines,
    sort_commands,
    split_whitespace,
    strip_whitespace,
)

FULL = SavedCommand("host:80", "open_ssh", True, "203.0.113.9", True, True)

# Two entries in the form the original's serializer (the toml crate) writes: one [[list]]
# table per entry, fields in declaration order, a blank line between tables.
ORIGINAL_FILE = """[[list]]
address = "10.0.0.1"
command = "deploy"
permissive = true
ip = "203.0.113.9"
ipv4 = true
ipv6 = false

[[list]]
address = "server.example.org:80"
command = "open_ssh"
permissive = false
ip = ""
ipv4 = false
ipv6 = false
"""


# -- the text line ------------------------------------------------------------------------


def test_line_has_the_originals_order_and_no_trailing_space() -> None:
    assert FULL.to_line() == (
        "send --address host:80 --command open_ssh --ip 203.0.113.9 --ipv4 --ipv6 --permissive"
    )


def test_an_empty_entry_is_send() -> None:
    assert SavedCommand("", "", False, "", False, False).to_line() == "send"


def test_blank_fields_are_left_out_of_the_line() -> None:
    assert SavedCommand(" ", "x", ip="\t").to_line() == "send --command x"


def test_our_two_fields_come_last_and_only_when_set() -> None:
    entry = SavedCommand("h", "c", key_file="/k/laptop.key", wait_port=22)
    assert entry.to_line() == "send --address h --command c --key-file /k/laptop.key --wait-port 22"
    assert SavedCommand("h", "c").to_line() == "send --address h --command c"


def test_line_parsing_takes_flags_anywhere_and_ignores_unknown_tokens() -> None:
    line = "--permissive whatever --command c send --ipv6 --address h:1 -k file --ip 1.2.3.4"
    assert SavedCommand.from_line(line) == SavedCommand("h:1", "c", True, "1.2.3.4", False, True)


def test_a_value_option_takes_the_next_token_whatever_it_is() -> None:
    assert SavedCommand.from_line("send --address --ipv4") == SavedCommand(
        "--ipv4", "", False, "", False, False
    )


def test_a_value_option_at_the_end_is_ignored() -> None:
    assert SavedCommand.from_line("send --ipv4 --address") == SavedCommand(
        "", "", False, "", True, False
    )


def test_a_missing_field_is_empty_and_the_last_value_wins() -> None:
    entry = SavedCommand.from_line("send --command a --command b")
    assert (entry.address, entry.command, entry.ip) == ("", "b", "")


def test_an_invalid_wait_port_is_ignored_like_any_unknown_value() -> None:
    assert SavedCommand.from_line("send --wait-port 0").wait_port is None
    assert SavedCommand.from_line("send --wait-port 65536").wait_port is None
    assert SavedCommand.from_line("send --wait-port ２２").wait_port is None
    assert SavedCommand.from_line("send --wait-port 65535").wait_port == 65535


def test_whitespace_is_rusts() -> None:
    # U+001F is whitespace to Python's str.split but not to Rust; U+3000 is to both
    assert split_whitespace("a\x1fb\u3000c\u2028d") == ["a\x1fb", "c", "d"]
    assert "\x1c" not in RUST_WHITESPACE and "\x85" in RUST_WHITESPACE
    assert strip_whitespace(" open\tssh\u00a0now ") == "opensshnow"


def test_display_name() -> None:
    assert FULL.display_name == "open_ssh@host:80 permissive ipv4 ipv6"
    assert SavedCommand("h:80", "x").display_name == "x@h:80"
    assert SavedCommand("h", "x", ipv6=True).display_name == "x@h ipv6"


def test_dashboard_text_skips_blank_lines() -> None:
    text = "send --address b --command x\n\n  \t\nsend --address a --command y\n"
    assert parse_lines(text) == [SavedCommand("b", "x"), SavedCommand("a", "y")]
    assert render_lines(parse_lines(text)) == (
        "send --address b --command x\nsend --address a --command y"
    )


def test_dashboard_text_refuses_what_create_refuses_naming_the_line() -> None:
    for line, why in (
        ("garbage line here", "no --address (an address is needed)"),
        ("send --command c --address", "--address has no value"),
        ("send --address h --wait-port abc", "--wait-port 'abc' is not a port (1-65535)"),
        ("send --address h --wait-port 22 --wait-port 0", "--wait-port '0' is not a port"),
        ("send --address h --ip 10.0.0.0/8", "--ip '10.0.0.0/8' is not an IP address"),
    ):
        with pytest.raises(LineError) as info:
            parse_lines(f"send --address ok\n\n{line}\n")
        assert str(info.value).startswith(f"line 3: {why}")
        assert info.value.number == 3
    # what the lenient reading of the legacy file accepts as it is
    assert check_line("junk --address --ipv4") == SavedCommand("--ipv4", "")


NO_SPACE = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters=sorted(RUST_WHITESPACE)),
    max_size=12,
)
ENTRIES = st.builds(
    SavedCommand,
    address=NO_SPACE,
    command=NO_SPACE,
    permissive=st.booleans(),
    ip=NO_SPACE,
    ipv4=st.booleans(),
    ipv6=st.booleans(),
    key_file=st.none() | NO_SPACE.filter(bool),
    wait_port=st.none() | st.integers(1, 65535),
)


@given(ENTRIES)
def test_entry_line_entry_round_trip(entry: SavedCommand) -> None:
    assert SavedCommand.from_line(entry.to_line()) == entry


TOKENS = ["send", "--address", "--command", "--ip", "--ipv4", "--ipv6", "--permissive"]
TOKENS += ["--key-file", "--wait-port", "22", "0", "x", "\t", "\u3000", "\x1f", ""]


@given(st.lists(st.sampled_from(TOKENS)).map(" ".join) | st.text(max_size=80))
def test_line_entry_line_reaches_a_fixed_point(line: str) -> None:
    once = SavedCommand.from_line(line).to_line()
    assert SavedCommand.from_line(once).to_line() == once


# -- the file -----------------------------------------------------------------------------


def test_the_originals_file_loads_sorted() -> None:
    assert parse_document(ORIGINAL_FILE) == [
        SavedCommand("10.0.0.1", "deploy", True, "203.0.113.9", True, False),
        SavedCommand("server.example.org:80", "open_ssh"),
    ]


def test_without_our_fields_we_write_the_originals_form() -> None:
    assert render_document(parse_document(ORIGINAL_FILE)) == ORIGINAL_FILE


def test_empty_list_is_written_as_the_original_writes_it() -> None:
    assert render_document([]) == "list = []\n"
    assert parse_document("list = []\n") == []


def test_our_fields_are_plain_extra_keys_of_the_table() -> None:
    text = render_document([SavedCommand("h", "c", key_file="a b.key", wait_port=22)])
    table = tomllib.loads(text)["list"][0]
    assert table == {
        "address": "h",
        "command": "c",
        "permissive": False,
        "ip": "",
        "ipv4": False,
        "ipv6": False,
        "key_file": "a b.key",
        "wait_port": 22,
    }


def test_unknown_keys_are_ignored_as_the_original_ignores_them() -> None:
    text = ORIGINAL_FILE.replace("ipv6 = false\n\n", 'ipv6 = false\ncolour = "green"\n\n')
    assert parse_document("version = 3\n" + text) == parse_document(ORIGINAL_FILE)


def test_legacy_string_form_loads_sorted() -> None:
    text = 'list = ["send --address b:80 --command z", "send --address a --command z --ipv4"]\n'
    assert parse_document(text) == [
        SavedCommand("a", "z", ipv4=True),
        SavedCommand("b:80", "z"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "list = [",  # not TOML
        "other = 1\n",  # no list
        'list = "send --address h"\n',  # not an array
        'list = ["send --address h", {address = "h"}]\n',  # mixed
        ORIGINAL_FILE.replace("permissive = true", 'permissive = "yes"'),
        ORIGINAL_FILE.replace('ip = ""\n', ""),  # all six fields are required
        ORIGINAL_FILE.replace("ipv6 = false\n\n", "ipv6 = false\nwait_port = 0\n\n"),
        ORIGINAL_FILE.replace("ipv6 = false\n\n", "ipv6 = false\nwait_port = true\n\n"),
        ORIGINAL_FILE.replace("ipv6 = false\n\n", "ipv6 = false\nkey_file = 1\n\n"),
    ],
)
def test_neither_form_is_a_format_error(text: str) -> None:
    with pytest.raises(FormatError):
        parse_document(text)


SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@given(
    st.lists(
        st.builds(
            SavedCommand,
            address=SAFE_TEXT,
            command=SAFE_TEXT,
            permissive=st.booleans(),
            ip=SAFE_TEXT,
            ipv4=st.booleans(),
            ipv6=st.booleans(),
            key_file=st.none() | SAFE_TEXT,
            wait_port=st.none() | st.integers(1, 65535),
        ),
        max_size=5,
    )
)
def test_any_list_survives_the_file(commands: list[SavedCommand]) -> None:
    assert parse_document(render_document(commands)) == sort_commands(commands)


def test_sorted_by_command_then_address_in_code_point_order() -> None:
    commands = [
        SavedCommand("b", "x"),
        SavedCommand("a", "y"),
        SavedCommand("a", "x"),
        SavedCommand("a", "Z"),
        SavedCommand("a", "é"),
        SavedCommand("a", "x", permissive=True),
    ]
    assert [(c.command, c.address, c.permissive) for c in sort_commands(commands)] == [
        ("Z", "a", False),
        ("x", "a", False),
        ("x", "a", True),  # stable: equal keys keep their order
        ("x", "b", False),
        ("y", "a", False),
        ("é", "a", False),
    ]


# -- the list and its file --------------------------------------------------------------


def test_missing_and_empty_files_start_empty_without_a_message(tmp_path: Path) -> None:
    saved = SavedCommands(tmp_path)
    assert (saved.commands, saved.message) == ([], None)
    (tmp_path / FILE_NAME).write_text("")
    saved = SavedCommands(tmp_path)
    assert (saved.commands, saved.message) == ([], None)


def test_every_change_saves_sorted_and_atomically(tmp_path: Path) -> None:
    saved = SavedCommands(tmp_path)
    saved.add(SavedCommand("b", "x"))
    saved.add(SavedCommand("a", "x", wait_port=22))
    path = tmp_path / FILE_NAME
    assert SavedCommands(tmp_path).commands == [
        SavedCommand("a", "x", wait_port=22),
        SavedCommand("b", "x"),
    ]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    saved.remove(SavedCommand("b", "x"))
    assert SavedCommands(tmp_path).commands == [SavedCommand("a", "x", wait_port=22)]
    saved.set([])
    assert path.read_text() == "list = []\n"
    assert [p.name for p in tmp_path.iterdir()] == [FILE_NAME]  # no temp files left


def test_remove_takes_one_equal_entry_unlike_the_original(tmp_path: Path) -> None:
    saved = SavedCommands(tmp_path)
    saved.set([SavedCommand("a", "x"), SavedCommand("a", "x"), SavedCommand("b", "x")])
    saved.remove(SavedCommand("a", "x"))
    assert saved.commands == [SavedCommand("a", "x"), SavedCommand("b", "x")]
    saved.remove(SavedCommand("c", "x"))  # gone already: nothing changes
    assert SavedCommands(tmp_path).commands == [SavedCommand("a", "x"), SavedCommand("b", "x")]


def test_legacy_file_is_migrated_to_the_table_form_on_save(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    path.write_text('list = ["send --address h --command c --permissive"]\n')
    saved = SavedCommands(tmp_path)
    assert saved.commands == [SavedCommand("h", "c", permissive=True)]
    assert saved.message is None
    saved.add(SavedCommand("g", "c"))
    assert tomllib.loads(path.read_text())["list"][1] == {
        "address": "h",
        "command": "c",
        "permissive": True,
        "ip": "",
        "ipv4": False,
        "ipv6": False,
    }


def test_unparsable_file_is_preserved_and_kept_aside_at_the_first_save(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    broken = b'[[list]]\naddress = "h"\ncommand = \n'
    path.write_bytes(broken)
    saved = SavedCommands(tmp_path)
    assert saved.commands == []
    assert saved.message is not None
    assert saved.message.startswith(
        "commands_list.toml parse failed, starting empty (file preserved): not TOML:"
    )
    assert path.read_bytes() == broken  # loading changes nothing
    saved.add(SavedCommand("h", "c"))
    assert (tmp_path / (FILE_NAME + UNPARSABLE_SUFFIX)).read_bytes() == broken
    assert parse_document(path.read_text()) == [SavedCommand("h", "c")]


def test_a_file_that_is_not_utf8_is_unparsable(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"list = []\n\xff\n")
    saved = SavedCommands(tmp_path)
    assert saved.message is not None and saved.message.endswith("not UTF-8")


def test_an_unreadable_file_says_so(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).mkdir()
    saved = SavedCommands(tmp_path)
    assert saved.commands == []
    assert saved.message is not None and "Is a directory (os error 21)" in saved.message


# -- the documentation ---------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]


def test_the_file_example_of_docs_ui_md_loads_as_it_says() -> None:
    doc = (REPO / "docs" / "ui.md").read_text(encoding="utf-8")
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    assert parse_document(example) == [
        SavedCommand("bastion.example.org:80", "open_ssh", wait_port=22),
        SavedCommand("[2001:db8::10]:8080", "restart_app", ipv6=True, key_file="ops.key"),
    ]


def test_the_screenshots_the_docs_show_exist() -> None:
    for doc, prefix in ((REPO / "README.md", "docs/"), (REPO / "docs" / "ui.md", "")):
        text = doc.read_text(encoding="utf-8")
        for view in ("execute", "create", "dashboard"):
            link = f"({prefix}img/ui-{view}.svg)"
            assert link in text, (doc.name, link)
            assert (REPO / "docs" / "img" / f"ui-{view}.svg").is_file()
