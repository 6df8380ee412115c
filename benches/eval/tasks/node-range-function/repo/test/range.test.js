'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { range } = require('../lib/range');

test('counts up by one', () => assert.deepStrictEqual(range(0, 5), [0, 1, 2, 3, 4]));
test('counts up by a step', () => assert.deepStrictEqual(range(1, 10, 3), [1, 4, 7]));
test('counts down', () => assert.deepStrictEqual(range(5, 0, -2), [5, 3, 1]));
test('empty', () => assert.deepStrictEqual(range(3, 3), []));
test('zero step throws', () => assert.throws(() => range(0, 5, 0), RangeError));
