import unittest

from primes import is_prime


class IsPrimeTest(unittest.TestCase):
    def test_small_primes(self):
        self.assertEqual([n for n in range(30) if is_prime(n)], [2, 3, 5, 7, 11, 13, 17, 19, 23, 29])

    def test_below_two(self):
        for n in (1, 0, -1, -7):
            self.assertFalse(is_prime(n), n)

    def test_composites(self):
        self.assertFalse(is_prime(91))
        self.assertFalse(is_prime(1_000_000_000))

    def test_large_prime(self):
        self.assertTrue(is_prime(999_999_937))


if __name__ == "__main__":
    unittest.main()
