import unittest

from durations import format_duration


class FormatDurationTest(unittest.TestCase):
    def test_zero(self):
        self.assertEqual(format_duration(0), "0:00:00")

    def test_padding(self):
        self.assertEqual(format_duration(61), "0:01:01")
        self.assertEqual(format_duration(3723), "1:02:03")

    def test_more_than_a_day(self):
        self.assertEqual(format_duration(90000), "25:00:00")


if __name__ == "__main__":
    unittest.main()
