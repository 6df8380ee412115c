'use strict';

/** Numbers from start up to (not including) end, by step. */
function range(start, end, step = 1) {
  throw new Error('not implemented');
}

module.exports = { range };
