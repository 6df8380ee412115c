import unittest

from intlist import parse_int_list


class ParseIntListTest(unittest.TestCase):
    def test_list(self):
        self.assertEqual(parse_int_list("1, -2,3"), [1, -2, 3])

    def test_single_negative(self):
        self.assertEqual(parse_int_list(" -10 "), [-10])

    def test_empty(self):
        self.assertEqual(parse_int_list(""), [])

    def test_only_spaces(self):
        self.assertEqual(parse_int_list("   "), [])


if __name__ == "__main__":
    unittest.main()
