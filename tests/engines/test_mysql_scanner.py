"""The dump scanner: exact tuple counts per table whatever the values hold, in any chunking."""

from __future__ import annotations

import pytest

from backstop.engines.mysql import DumpScanner

HOSTILE_DUMP = (
    b"/*M!999999\\- enable the sandbox mode */ \n"
    b"-- MariaDB dump 10.19\n"
    b"--\n"
    b"-- Table structure for table `notes`\n"
    b"--\n\n"
    b"CREATE TABLE `notes` (`id` int, `body` text) COMMENT='INSERT INTO `notes` VALUES (9),(9);';\n"
    b"--\n"
    b"-- Dumping data for table `notes`\n"
    b"--\n\n"
    b"LOCK TABLES `notes` WRITE;\n"
    b"INSERT INTO `notes` VALUES\n"
    b"(1,'a),(b'),\n"
    b"(2,'it\\'s; done'),\n"
    b"(3,'back\\\\slash\\\\'),\n"
    b"(4,'new\\nline\nreal newline\n-- Dumping data for table `x`\nINSERT INTO `notes` VALUES (7),(8);'),\n"
    b"(5,'doubled '' quote ''),('),\n"
    b"(6,0x27292C283B5C),\n"
    b"(7,NULL);\n"
    b"INSERT INTO `notes` VALUES (8,'\xe2\x9c\x93 unicode'),(9,'(((');\n"
    b"UNLOCK TABLES;\n"
    b"--\n"
    b"-- Dumping data for table `we``ird`\n"
    b"--\n\n"
    b"INSERT INTO `we``ird` VALUES (1),(2);\n"
    b"UNLOCK TABLES;\n"
    b"--\n"
    b"-- Dumping data for table `empty`\n"
    b"--\n\n"
    b"LOCK TABLES `empty` WRITE;\n"
    b"UNLOCK TABLES;\n"
    b"DELIMITER ;;\n"
    b"INSERT INTO `notes` VALUES (100),(101) ;;\n"
    b"DELIMITER ;\n"
    b"\n"
    b"-- Dump completed on 2026-11-22  1:00:00\n"
)
EXPECTED = {"notes": 9, "we`ird": 2, "empty": 0}


def scan(data: bytes, chunk: int) -> DumpScanner:
    scanner = DumpScanner()
    for start in range(0, len(data), chunk):
        scanner.feed(data[start : start + chunk])
    scanner.finish()
    return scanner


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 13, 64, 1 << 20])
def test_scanner_counts_each_tuple_once_whatever_the_values_hold(chunk: int) -> None:
    # given a dump whose values contain '),(', quotes, escapes, ';', newlines and fake statements,
    # and statements outside data sections that look like data
    # when it is scanned in chunks of any size
    scanner = scan(HOSTILE_DUMP, chunk)

    # then every table has exactly its tuples and the dump is complete
    assert scanner.tables == EXPECTED
    assert scanner.problem() is None


def test_scanner_reports_a_missing_trailer() -> None:
    # given a dump cut after its data
    cut = HOSTILE_DUMP[: HOSTILE_DUMP.index(b"-- Dump completed")]

    # when it is scanned
    scanner = scan(cut, 4096)

    # then it is not complete, and says why
    assert scanner.problem() == "the dump does not end with its '-- Dump completed' trailer"


def test_scanner_reports_a_dump_cut_inside_a_data_statement() -> None:
    # given a dump cut in the middle of a string value
    cut = HOSTILE_DUMP[: HOSTILE_DUMP.index(b"it\\'s") + 3]

    # when it is scanned
    scanner = scan(cut, 4096)

    # then the open statement is named
    assert scanner.problem() == "the dump ends inside the data of table notes"


def test_a_trailer_followed_by_more_statements_is_not_an_end() -> None:
    # given a trailer in the middle of the stream (two dumps concatenated, or a trailer faked by a value)
    data = HOSTILE_DUMP + b"INSERT INTO `notes` VALUES (1);\n"

    # when it is scanned
    scanner = scan(data, 4096)

    # then the dump is not complete
    assert scanner.problem() is not None
