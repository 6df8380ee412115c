import unittest

from textutil import slugify


class SlugifyTest(unittest.TestCase):
    def test_punctuation_becomes_one_hyphen(self):
        self.assertEqual(slugify("Hello, World!"), "hello-world")

    def test_spaces_and_symbols(self):
        self.assertEqual(slugify("  Rust & Python 3  "), "rust-python-3")

    def test_empty(self):
        self.assertEqual(slugify(""), "")


if __name__ == "__main__":
    unittest.main()
