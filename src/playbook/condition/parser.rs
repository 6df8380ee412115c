//! Lexer and recursive-descent parser for the condition grammar (see the parent module).

use super::{ConditionError, Expr, MAX_CONDITION_DEPTH};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    LParen,
    RParen,
    Not,
    And,
    Or,
    Equal,
    NotEqual,
    Ident(String),
    Literal(String),
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    /// 1-based character column where the token starts.
    column: usize,
    /// The token as written, for error messages.
    text: String,
}

fn error(column: usize, message: impl Into<String>) -> ConditionError {
    ConditionError { column, message: message.into() }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Splits the text into tokens, rejecting anything outside the grammar.
fn lex(text: &str) -> Result<Vec<Token>, ConditionError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let next = chars.get(i + 1).copied();
        let kind = match (c, next) {
            ('(', _) => Kind::LParen,
            (')', _) => Kind::RParen,
            ('&', Some('&')) => Kind::And,
            ('|', Some('|')) => Kind::Or,
            ('=', Some('=')) => Kind::Equal,
            ('!', Some('=')) => Kind::NotEqual,
            ('!', _) => Kind::Not,
            ('&' | '|' | '=', _) => {
                return Err(error(i + 1, format!("unexpected token '{c}', expected '{c}{c}'")));
            }
            ('\'' | '"', _) => Kind::Literal(lex_string(&chars, &mut i)?),
            (c, _) if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) => {
                Kind::Literal(lex_number(&chars, &mut i)?)
            }
            (c, _) if is_ident_start(c) => lex_word(&chars, &mut i)?,
            (c, _) => return Err(error(i + 1, format!("unexpected character '{c}'"))),
        };
        i = match kind {
            Kind::And | Kind::Or | Kind::Equal | Kind::NotEqual => start + 2,
            Kind::LParen | Kind::RParen | Kind::Not => start + 1,
            _ => i,
        };
        let text = chars[start..i].iter().collect();
        tokens.push(Token { kind, column: start + 1, text });
    }
    Ok(tokens)
}

/// Reads a quoted string starting at `*i`; leaves `*i` after the closing quote.
fn lex_string(chars: &[char], i: &mut usize) -> Result<String, ConditionError> {
    let quote = chars[*i];
    let start = *i;
    let len = chars[start + 1..].iter().position(|&c| c == quote);
    let Some(len) = len else {
        return Err(error(start + 1, "unterminated string literal"));
    };
    *i = start + 1 + len + 1;
    Ok(chars[start + 1..start + 1 + len].iter().collect())
}

/// Reads `-?digits(.digits)?`; leaves `*i` after it.
fn lex_number(chars: &[char], i: &mut usize) -> Result<String, ConditionError> {
    let start = *i;
    let mut j = start + usize::from(chars[start] == '-');
    let digits = |j: &mut usize| {
        while chars.get(*j).is_some_and(char::is_ascii_digit) {
            *j += 1;
        }
    };
    digits(&mut j);
    if chars.get(j) == Some(&'.') {
        j += 1;
        let before = j;
        digits(&mut j);
        if j == before {
            return Err(error(j + 1, "expected digits after '.' in a number"));
        }
    }
    if chars.get(j).is_some_and(|&c| is_ident_char(c) || c == '.') {
        return Err(error(j + 1, format!("unexpected character '{}' in a number", chars[j])));
    }
    *i = j;
    Ok(chars[start..j].iter().collect())
}

/// Reads a dotted identifier or a `true`/`false` keyword; leaves `*i` after it.
fn lex_word(chars: &[char], i: &mut usize) -> Result<Kind, ConditionError> {
    let start = *i;
    let mut j = start;
    loop {
        while chars.get(j).is_some_and(|&c| is_ident_char(c)) {
            j += 1;
        }
        if chars.get(j) != Some(&'.') {
            break;
        }
        if !chars.get(j + 1).is_some_and(|&c| is_ident_start(c)) {
            return Err(error(j + 2, "expected a name after '.' in an identifier"));
        }
        j += 1;
    }
    *i = j;
    let word: String = chars[start..j].iter().collect();
    Ok(match word.as_str() {
        "true" | "false" => Kind::Literal(word),
        _ => Kind::Ident(word),
    })
}

/// Recursive-descent parser over the token list.
pub(super) struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Column just past the text, where "unexpected end" errors point.
    end_column: usize,
    depth: usize,
}

impl Parser {
    pub(super) fn new(text: &str) -> Result<Parser, ConditionError> {
        let tokens = lex(text)?;
        Ok(Parser { tokens, pos: 0, end_column: text.chars().count() + 1, depth: 0 })
    }

    pub(super) fn parse_condition(mut self) -> Result<Expr, ConditionError> {
        if self.tokens.is_empty() {
            return Err(error(1, "empty condition"));
        }
        let expr = self.or()?;
        match self.tokens.get(self.pos) {
            None => Ok(expr),
            Some(t) if t.kind == Kind::RParen => {
                Err(error(t.column, "unexpected ')' without a matching '('"))
            }
            Some(t) => Err(error(
                t.column,
                format!("unexpected token '{}', expected '&&', '||' or the end of the condition", t.text),
            )),
        }
    }

    fn peek(&self) -> Option<&Kind> {
        self.tokens.get(self.pos).map(|t| &t.kind)
    }

    fn or(&mut self) -> Result<Expr, ConditionError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Kind::Or) {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ConditionError> {
        let mut left = self.comparison()?;
        while self.peek() == Some(&Kind::And) {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.comparison()?));
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Expr, ConditionError> {
        let left = self.unary()?;
        let make = match self.peek() {
            Some(Kind::Equal) => Expr::Equal,
            Some(Kind::NotEqual) => Expr::NotEqual,
            _ => return Ok(left),
        };
        self.pos += 1;
        Ok(make(Box::new(left), Box::new(self.unary()?)))
    }

    fn unary(&mut self) -> Result<Expr, ConditionError> {
        if self.peek() == Some(&Kind::Not) {
            let column = self.tokens[self.pos].column;
            self.pos += 1;
            self.descend(column)?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ConditionError> {
        let Some(token) = self.tokens.get(self.pos).cloned() else {
            return Err(error(self.end_column, "expected a value, found the end of the condition"));
        };
        self.pos += 1;
        match token.kind {
            Kind::Ident(name) => Ok(Expr::Variable(name)),
            Kind::Literal(text) => Ok(Expr::Literal(text)),
            Kind::LParen => {
                self.descend(token.column)?;
                let inner = self.or()?;
                self.depth -= 1;
                if self.peek() != Some(&Kind::RParen) {
                    let column = self.tokens.get(self.pos).map_or(self.end_column, |t| t.column);
                    let message = format!("expected ')' to close the '(' at column {}", token.column);
                    return Err(error(column, message));
                }
                self.pos += 1;
                Ok(inner)
            }
            _ => Err(error(token.column, format!("unexpected token '{}', expected a value", token.text))),
        }
    }

    fn descend(&mut self, column: usize) -> Result<(), ConditionError> {
        self.depth += 1;
        if self.depth > MAX_CONDITION_DEPTH {
            return Err(error(column, format!("nesting deeper than {MAX_CONDITION_DEPTH} levels")));
        }
        Ok(())
    }
}
