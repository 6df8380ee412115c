import unittest

from pages import paginate


class PaginateTest(unittest.TestCase):
    def test_first_page(self):
        self.assertEqual(paginate([1, 2, 3, 4, 5], 1, 2), [1, 2])

    def test_last_partial_page(self):
        self.assertEqual(paginate([1, 2, 3, 4, 5], 3, 2), [5])

    def test_past_the_end(self):
        self.assertEqual(paginate([1, 2, 3], 5, 2), [])


if __name__ == "__main__":
    unittest.main()
