'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { titleCase } = require('../lib/format');

test('capitalises words', () => assert.strictEqual(titleCase('hello world'), 'Hello World'));
test('lower-cases the rest and squeezes spaces', () => assert.strictEqual(titleCase('  mIxEd   CASE '), 'Mixed Case'));
test('empty and blank', () => {
  assert.strictEqual(titleCase(''), '');
  assert.strictEqual(titleCase('   '), '');
});
