import unittest

from pricing import bulk_discount


class BulkDiscountTest(unittest.TestCase):
    def test_small_orders(self):
        self.assertEqual(bulk_discount(9), 0)

    def test_ten_items(self):
        self.assertEqual(bulk_discount(10), 5)
        self.assertEqual(bulk_discount(49), 5)

    def test_fifty_items(self):
        self.assertEqual(bulk_discount(50), 10)


if __name__ == "__main__":
    unittest.main()
