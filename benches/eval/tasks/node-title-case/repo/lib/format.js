'use strict';

/** 'hello world' -> 'Hello World'. */
function titleCase(text) {
  return text;
}

module.exports = { titleCase };
