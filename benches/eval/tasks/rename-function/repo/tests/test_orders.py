import unittest

import orders
from report import report


class OrdersTest(unittest.TestCase):
    def test_order_total(self):
        self.assertEqual(orders.order_total([(2, 1.5), (1, 4.0)]), 7.0)

    def test_old_name_is_gone(self):
        self.assertFalse(hasattr(orders, "calc"))

    def test_report_uses_the_total(self):
        self.assertEqual(report([(2, 1.5), (1, 4.0)]), "2 lines, total 7.00")


if __name__ == "__main__":
    unittest.main()
