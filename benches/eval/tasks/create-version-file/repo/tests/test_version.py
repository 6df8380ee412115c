import pathlib
import unittest

ROOT = pathlib.Path(__file__).resolve().parent.parent


class VersionFileTest(unittest.TestCase):
    def test_version_file_holds_the_release(self):
        self.assertEqual((ROOT / "VERSION").read_text(), "1.4.0\n")


if __name__ == "__main__":
    unittest.main()
