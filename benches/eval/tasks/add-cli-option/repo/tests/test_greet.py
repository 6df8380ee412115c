import pathlib
import subprocess
import sys
import unittest

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "greet.py"


def run(*args):
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)
    return done.returncode, done.stdout


class GreetTest(unittest.TestCase):
    def test_once_by_default(self):
        self.assertEqual(run("Ada"), (0, "Hello, Ada!\n"))

    def test_times(self):
        self.assertEqual(run("Ada", "--times", "3"), (0, "Hello, Ada!\n" * 3))

    def test_times_must_be_a_number(self):
        self.assertNotEqual(run("Ada", "--times", "many")[0], 0)


if __name__ == "__main__":
    unittest.main()
