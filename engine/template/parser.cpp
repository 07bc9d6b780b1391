#include "engine/template/parser.h"

#include <charconv>
#include <cstdlib>
#include <set>

#include "absl/status/status.h"
#include "engine/template/filters.h"
#include "engine/template/jinja_tests.h"
#include "engine/template/lexer.h"
#include "engine/template/string_methods.h"

namespace bm::engine {
namespace {

using TT = Token::Type;

const std::set<std::string_view>& unsupported_tags() {
  static const std::set<std::string_view> kTags = {"include", "import", "from",      "extends", "block",
                                                   "call",    "filter", "with",      "raw",     "autoescape",
                                                   "do",      "trans",  "pluralize", "endraw"};
  return kTags;
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  absl::StatusOr<Body> run() {
    std::string end;
    auto body = parse_body({}, &end, 0);
    if (!body.ok()) return body.status();
    return body;
  }

 private:
  struct DepthGuard {
    explicit DepthGuard(int& d) : depth(d) { ++depth; }
    ~DepthGuard() { --depth; }
    int& depth;
  };

  const Token& cur() const { return tokens_[pos_]; }
  const Token& peek(size_t ahead = 1) const { return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)]; }
  void advance() {
    if (pos_ + 1 < tokens_.size()) ++pos_;
  }
  bool is_op(std::string_view op) const { return cur().type == TT::kOperator && cur().text == op; }
  bool is_name(std::string_view name) const { return cur().type == TT::kName && cur().text == name; }

  absl::Status error(std::string_view what) const { return error_at(cur().line, what); }
  static absl::Status error_at(int line, std::string_view what) {
    return absl::InvalidArgumentError(str_cat("chat template line ", line, ": ", what));
  }
  std::string describe(const Token& t) const {
    switch (t.type) {
      case TT::kText:
        return "text";
      case TT::kVarBegin:
        return "'{{'";
      case TT::kVarEnd:
        return "'}}'";
      case TT::kBlockBegin:
        return "'{%'";
      case TT::kBlockEnd:
        return "'%}'";
      case TT::kName:
        return str_cat("'", t.text, "'");
      case TT::kString:
        return "a string";
      case TT::kInt:
      case TT::kFloat:
        return str_cat("'", t.text, "'");
      case TT::kOperator:
        return str_cat("'", t.text, "'");
      case TT::kEof:
        return "end of template";
    }
    return "?";
  }

  absl::Status expect_op(std::string_view op) {
    if (!is_op(op)) return error(str_cat("expected '", op, "' but found ", describe(cur())));
    advance();
    return absl::OkStatus();
  }
  absl::Status expect_block_end(std::string_view tag) {
    if (cur().type != TT::kBlockEnd) {
      return error(str_cat("expected '%}' to close '{% ", tag, " %}' but found ", describe(cur())));
    }
    advance();
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> expect_name(std::string_view context) {
    if (cur().type != TT::kName) return error(str_cat("expected a name ", context, " but found ", describe(cur())));
    std::string n = cur().text;
    advance();
    return n;
  }

  // Parses statements until a `{% <end> %}` tag for one of `ends`; leaves the end tag's name as current
  // token.
  absl::StatusOr<Body> parse_body(const std::vector<std::string_view>& ends, std::string* found, int open_line) {
    DepthGuard guard(depth_);
    if (depth_ > kMaxTemplateNesting) return error("blocks are nested too deeply");
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.type == TT::kEof) {
        if (!ends.empty()) {
          return error_at(open_line, str_cat("block is never closed (expected '{% ", ends.back(), " %}')"));
        }
        return body;
      }
      if (t.type == TT::kText) {
        auto s = std::make_unique<Stmt>(Stmt{Stmt::Kind::kText});
        s->line = t.line;
        s->text = t.text;
        body.push_back(std::move(s));
        advance();
        continue;
      }
      if (t.type == TT::kVarBegin) {
        auto s = std::make_unique<Stmt>(Stmt{Stmt::Kind::kOutput});
        s->line = t.line;
        advance();
        auto e = parse_tuple(true, false, {});
        if (!e.ok()) return e.status();
        s->expr = *std::move(e);
        if (cur().type != TT::kVarEnd) return error(str_cat("expected '}}' but found ", describe(cur())));
        advance();
        body.push_back(std::move(s));
        continue;
      }
      if (t.type != TT::kBlockBegin) return error(str_cat("unexpected ", describe(t)));
      advance();
      if (cur().type != TT::kName) return error(str_cat("expected a tag name but found ", describe(cur())));
      for (std::string_view e : ends) {
        if (cur().text == e) {
          *found = cur().text;
          return body;
        }
      }
      auto s = parse_statement();
      if (!s.ok()) return s.status();
      body.push_back(*std::move(s));
    }
  }

  absl::StatusOr<StmtPtr> parse_statement() {
    const Token& t = cur();
    int line = t.line;
    std::string tag = t.text;
    advance();
    if (tag == "if") return parse_if(line);
    if (tag == "for") return parse_for(line);
    if (tag == "set") return parse_set(line);
    if (tag == "macro") return parse_macro(line);
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) return error_at(line, str_cat("'{% ", tag, " %}' outside a for loop"));
      auto st = expect_block_end(tag);
      if (!st.ok()) return st;
      auto s = std::make_unique<Stmt>(Stmt{tag == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue});
      s->line = line;
      return s;
    }
    if (tag == "generation") {
      auto st = expect_block_end(tag);
      if (!st.ok()) return st;
      auto s = std::make_unique<Stmt>(Stmt{Stmt::Kind::kGeneration});
      s->line = line;
      auto body = parse_closed_body({"endgeneration"}, "generation", line);
      if (!body.ok()) return body.status();
      s->bodies.push_back(*std::move(body));
      return s;
    }
    if (unsupported_tags().count(tag) > 0) {
      return error_at(line, str_cat("unsupported construct '{% ", tag, " %}'"));
    }
    return error_at(line, str_cat("unknown or misplaced tag '{% ", tag, " %}'"));
  }

  // Parses a body that ends with exactly `end` (consumed together with its '%}').
  absl::StatusOr<Body> parse_closed_body(const std::vector<std::string_view>& ends, std::string_view tag, int line) {
    std::string found;
    auto body = parse_body(ends, &found, line);
    if (!body.ok()) return body.status();
    advance();
    auto st = expect_block_end(found);
    if (!st.ok()) return st;
    (void)tag;
    return body;
  }

  absl::StatusOr<StmtPtr> parse_if(int line) {
    auto s = std::make_unique<Stmt>(Stmt{Stmt::Kind::kIf});
    s->line = line;
    while (true) {
      auto cond = parse_tuple(true, false, {});
      if (!cond.ok()) return cond.status();
      auto st = expect_block_end("if");
      if (!st.ok()) return st;
      std::string found;
      auto body = parse_body({"elif", "else", "endif"}, &found, line);
      if (!body.ok()) return body.status();
      s->conditions.push_back(*std::move(cond));
      s->bodies.push_back(*std::move(body));
      advance();
      if (found == "elif") continue;
      if (found == "else") {
        st = expect_block_end("else");
        if (!st.ok()) return st;
        auto else_body = parse_closed_body({"endif"}, "if", line);
        if (!else_body.ok()) return else_body.status();
        s->else_body = *std::move(else_body);
        return s;
      }
      st = expect_block_end("endif");
      if (!st.ok()) return st;
      return s;
    }
  }

  absl::StatusOr<Target> parse_target(bool allow_namespace) {
    Target target;
    if (allow_namespace && cur().type == TT::kName && peek().type == TT::kOperator && peek().text == "." &&
        peek(2).type == TT::kName) {
      target.names.push_back(cur().text);
      target.attribute = peek(2).text;
      advance();
      advance();
      advance();
      return target;
    }
    bool parens = is_op("(");
    if (parens) advance();
    while (true) {
      auto n = expect_name("as an assignment target");
      if (!n.ok()) return n.status();
      if (*n == "true" || *n == "false" || *n == "none" || *n == "True" || *n == "False" || *n == "None") {
        return error(str_cat("cannot assign to '", *n, "'"));
      }
      target.names.push_back(*n);
      if (!is_op(",")) break;
      target.is_tuple = true;
      advance();
      if (cur().type != TT::kName) break;
    }
    if (parens) {
      auto st = expect_op(")");
      if (!st.ok()) return st;
    }
    return target;
  }

  absl::StatusOr<StmtPtr> parse_for(int line) {
    auto s = std::make_unique<Stmt>(Stmt{Stmt::Kind::kFor});
    s->line = line;
    auto target = parse_target(false);
    if (!target.ok()) return target.status();
    s->target = *std::move(target);
    if (!is_name("in")) return error(str_cat("expected 'in' in '{% for %}' but found ", describe(cur())));
    advance();
    auto iter = parse_tuple(false, false, {"recursive"});
    if (!iter.ok()) return iter.status();
    s->expr = *std::move(iter);
    if (is_name("if")) {
      advance();
      auto filter = parse_tuple(true, false, {"recursive"});
      if (!filter.ok()) return filter.status();
      s->filter = *std::move(filter);
    }
    if (is_name("recursive")) return error("unsupported construct 'recursive' for loops");
    auto st = expect_block_end("for");
    if (!st.ok()) return st;
    ++loop_depth_;
    std::string found;
    auto body = parse_body({"else", "endfor"}, &found, line);
    --loop_depth_;
    if (!body.ok()) return body.status();
    s->bodies.push_back(*std::move(body));
    advance();
    if (found == "else") {
      st = expect_block_end("else");
      if (!st.ok()) return st;
      auto else_body = parse_closed_body({"endfor"}, "for", line);
      if (!else_body.ok()) return else_body.status();
      s->else_body = *std::move(else_body);
      return s;
    }
    st = expect_block_end("endfor");
    if (!st.ok()) return st;
    return s;
  }

  absl::StatusOr<StmtPtr> parse_set(int line) {
    auto s = std::make_unique<Stmt>(Stmt{Stmt::Kind::kSet});
    s->line = line;
    auto target = parse_target(true);
    if (!target.ok()) return target.status();
    s->target = *std::move(target);
    if (is_op("=")) {
      advance();
      auto e = parse_tuple(true, false, {});
      if (!e.ok()) return e.status();
      s->expr = *std::move(e);
      auto st = expect_block_end("set");
      if (!st.ok()) return st;
      return s;
    }
    if (is_op("|")) return error("unsupported construct: filter on a '{% set %}' block");
    if (s->target.is_tuple || !s->target.attribute.empty()) {
      return error("a '{% set %}' block needs a single variable name");
    }
    auto st = expect_block_end("set");
    if (!st.ok()) return st;
    s->kind = Stmt::Kind::kSetBlock;
    auto body = parse_closed_body({"endset"}, "set", line);
    if (!body.ok()) return body.status();
    s->bodies.push_back(*std::move(body));
    return s;
  }

  absl::StatusOr<StmtPtr> parse_macro(int line) {
    auto s = std::make_unique<Stmt>(Stmt{Stmt::Kind::kMacro});
    s->line = line;
    auto name = expect_name("after 'macro'");
    if (!name.ok()) return name.status();
    s->name = *name;
    auto st = expect_op("(");
    if (!st.ok()) return st;
    while (!is_op(")")) {
      if (!s->params.empty()) {
        st = expect_op(",");
        if (!st.ok()) return st;
        if (is_op(")")) break;
      }
      auto param = expect_name("as a macro parameter");
      if (!param.ok()) return param.status();
      MacroParam p{*param, nullptr};
      if (is_op("=")) {
        advance();
        auto e = parse_expression(true);
        if (!e.ok()) return e.status();
        p.default_value = *std::move(e);
      }
      s->params.push_back(std::move(p));
    }
    advance();
    st = expect_block_end("macro");
    if (!st.ok()) return st;
    int saved_loops = loop_depth_;
    loop_depth_ = 0;
    auto body = parse_closed_body({"endmacro"}, "macro", line);
    loop_depth_ = saved_loops;
    if (!body.ok()) return body.status();
    s->bodies.push_back(*std::move(body));
    return s;
  }

  // ---- expressions ----

  ExprPtr make(Expr::Kind kind, int line) {
    auto e = std::make_unique<Expr>(Expr{kind});
    e->line = line;
    return e;
  }

  bool is_tuple_end(const std::vector<std::string_view>& extra_end) const {
    const Token& t = cur();
    if (t.type == TT::kVarEnd || t.type == TT::kBlockEnd || t.type == TT::kEof) return true;
    if (t.type == TT::kOperator && t.text == ")") return true;
    if (t.type == TT::kName) {
      for (auto e : extra_end) {
        if (t.text == e) return true;
      }
    }
    return false;
  }

  absl::StatusOr<ExprPtr> parse_tuple(bool with_condexpr, bool explicit_parens,
                                      const std::vector<std::string_view>& extra_end) {
    int line = cur().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) {
        auto st = expect_op(",");
        if (!st.ok()) return st;
      }
      if (is_tuple_end(extra_end)) break;
      auto e = parse_expression(with_condexpr);
      if (!e.ok()) return e.status();
      items.push_back(*std::move(e));
      if (is_op(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parens) return error(str_cat("expected an expression but found ", describe(cur())));
    }
    auto t = make(Expr::Kind::kTuple, line);
    t->children = std::move(items);
    return t;
  }

  absl::StatusOr<ExprPtr> parse_expression(bool with_condexpr) {
    DepthGuard guard(depth_);
    if (depth_ > kMaxTemplateNesting) return error("expression is nested too deeply");
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  absl::StatusOr<ExprPtr> parse_condexpr() {
    auto left = parse_or();
    if (!left.ok()) return left;
    ExprPtr expr = *std::move(left);
    while (is_name("if")) {
      int line = cur().line;
      advance();
      auto cond = parse_or();
      if (!cond.ok()) return cond;
      ExprPtr otherwise;
      if (is_name("else")) {
        advance();
        DepthGuard guard(depth_);
        if (depth_ > kMaxTemplateNesting) return error("expression is nested too deeply");
        auto e = parse_condexpr();
        if (!e.ok()) return e;
        otherwise = *std::move(e);
      }
      auto node = make(Expr::Kind::kCondition, line);
      node->children.push_back(*std::move(cond));
      node->children.push_back(std::move(expr));
      node->children.push_back(std::move(otherwise));
      expr = std::move(node);
    }
    return expr;
  }

  absl::StatusOr<ExprPtr> parse_or() {
    auto left = parse_and();
    if (!left.ok()) return left;
    ExprPtr expr = *std::move(left);
    while (is_name("or")) {
      int line = cur().line;
      advance();
      auto right = parse_and();
      if (!right.ok()) return right;
      auto node = make(Expr::Kind::kOr, line);
      node->children.push_back(std::move(expr));
      node->children.push_back(*std::move(right));
      expr = std::move(node);
    }
    return expr;
  }

  absl::StatusOr<ExprPtr> parse_and() {
    auto left = parse_not();
    if (!left.ok()) return left;
    ExprPtr expr = *std::move(left);
    while (is_name("and")) {
      int line = cur().line;
      advance();
      auto right = parse_not();
      if (!right.ok()) return right;
      auto node = make(Expr::Kind::kAnd, line);
      node->children.push_back(std::move(expr));
      node->children.push_back(*std::move(right));
      expr = std::move(node);
    }
    return expr;
  }

  absl::StatusOr<ExprPtr> parse_not() {
    if (is_name("not")) {
      int line = cur().line;
      advance();
      DepthGuard guard(depth_);
      if (depth_ > kMaxTemplateNesting) return error("expression is nested too deeply");
      auto operand = parse_not();
      if (!operand.ok()) return operand;
      auto node = make(Expr::Kind::kNot, line);
      node->children.push_back(*std::move(operand));
      return node;
    }
    return parse_compare();
  }

  absl::StatusOr<ExprPtr> parse_compare() {
    int line = cur().line;
    auto left = parse_math1();
    if (!left.ok()) return left;
    ExprPtr node;
    while (true) {
      std::string op;
      if (cur().type == TT::kOperator && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                          cur().text == "<=" || cur().text == ">" || cur().text == ">=")) {
        op = cur().text;
        advance();
      } else if (is_name("in")) {
        op = "in";
        advance();
      } else if (is_name("not") && peek().type == TT::kName && peek().text == "in") {
        op = "notin";
        advance();
        advance();
      } else {
        break;
      }
      auto right = parse_math1();
      if (!right.ok()) return right;
      if (!node) {
        node = make(Expr::Kind::kCompare, line);
        node->children.push_back(*std::move(left));
      }
      node->ops.push_back(op);
      node->children.push_back(*std::move(right));
    }
    if (node) return node;
    return left;
  }

  using SubParser = absl::StatusOr<ExprPtr> (Parser::*)();

  absl::StatusOr<ExprPtr> binary_chain(SubParser sub, const std::vector<std::string_view>& ops) {
    auto left = (this->*sub)();
    if (!left.ok()) return left;
    ExprPtr expr = *std::move(left);
    while (true) {
      std::string op;
      for (auto o : ops) {
        if (is_op(o)) op = std::string(o);
      }
      if (op.empty()) return expr;
      int line = cur().line;
      advance();
      auto right = (this->*sub)();
      if (!right.ok()) return right;
      auto node = make(Expr::Kind::kBinary, line);
      node->name = op;
      node->children.push_back(std::move(expr));
      node->children.push_back(*std::move(right));
      expr = std::move(node);
    }
  }

  absl::StatusOr<ExprPtr> parse_math1() { return binary_chain(&Parser::parse_concat, {"+", "-"}); }
  absl::StatusOr<ExprPtr> parse_concat() { return binary_chain(&Parser::parse_math2, {"~"}); }
  absl::StatusOr<ExprPtr> parse_math2() { return binary_chain(&Parser::parse_pow, {"*", "/", "//", "%"}); }
  absl::StatusOr<ExprPtr> parse_pow() { return binary_chain(&Parser::parse_unary_filtered, {"**"}); }
  absl::StatusOr<ExprPtr> parse_unary_filtered() { return parse_unary(true); }

  absl::StatusOr<ExprPtr> parse_unary(bool with_filter) {
    DepthGuard guard(depth_);
    if (depth_ > kMaxTemplateNesting) return error("expression is nested too deeply");
    int line = cur().line;
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      bool neg = is_op("-");
      advance();
      auto operand = parse_unary(false);
      if (!operand.ok()) return operand;
      node = make(neg ? Expr::Kind::kNeg : Expr::Kind::kPos, line);
      node->children.push_back(*std::move(operand));
    } else {
      auto primary = parse_primary();
      if (!primary.ok()) return primary;
      node = *std::move(primary);
    }
    auto post = parse_postfix(std::move(node));
    if (!post.ok()) return post;
    node = *std::move(post);
    if (with_filter) return parse_filter_expr(std::move(node));
    return node;
  }

  absl::StatusOr<ExprPtr> parse_primary() {
    const Token& t = cur();
    int line = t.line;
    if (t.type == TT::kName) {
      std::string n = t.text;
      advance();
      if (n == "true" || n == "True") return literal(Value::boolean(true), line);
      if (n == "false" || n == "False") return literal(Value::boolean(false), line);
      if (n == "none" || n == "None") return literal(Value::none(), line);
      auto node = make(Expr::Kind::kName, line);
      node->name = n;
      return node;
    }
    if (t.type == TT::kString) {
      std::string s;
      while (cur().type == TT::kString) {
        s += cur().text;
        advance();
      }
      return literal(Value::string(std::move(s)), line);
    }
    if (t.type == TT::kInt) {
      int64_t v = 0;
      auto res = std::from_chars(t.text.data(), t.text.data() + t.text.size(), v);
      if (res.ec != std::errc() || res.ptr != t.text.data() + t.text.size()) {
        return error(str_cat("integer literal ", t.text, " does not fit in 64 bits"));
      }
      advance();
      return literal(Value::integer(v), line);
    }
    if (t.type == TT::kFloat) {
      double d = std::strtod(t.text.c_str(), nullptr);
      advance();
      return literal(Value::number(d), line);
    }
    if (is_op("(")) {
      advance();
      auto e = parse_tuple(true, true, {});
      if (!e.ok()) return e;
      auto st = expect_op(")");
      if (!st.ok()) return st;
      return e;
    }
    if (is_op("[")) {
      advance();
      auto node = make(Expr::Kind::kList, line);
      while (!is_op("]")) {
        if (!node->children.empty()) {
          auto st = expect_op(",");
          if (!st.ok()) return st;
          if (is_op("]")) break;
        }
        auto e = parse_expression(true);
        if (!e.ok()) return e;
        node->children.push_back(*std::move(e));
      }
      advance();
      return node;
    }
    if (is_op("{")) {
      advance();
      auto node = make(Expr::Kind::kDict, line);
      while (!is_op("}")) {
        if (!node->children.empty()) {
          auto st = expect_op(",");
          if (!st.ok()) return st;
          if (is_op("}")) break;
        }
        auto k = parse_expression(true);
        if (!k.ok()) return k;
        auto st = expect_op(":");
        if (!st.ok()) return st;
        auto v = parse_expression(true);
        if (!v.ok()) return v;
        node->children.push_back(*std::move(k));
        node->children.push_back(*std::move(v));
      }
      advance();
      return node;
    }
    return error(str_cat("unexpected ", describe(t), " in an expression"));
  }

  ExprPtr literal(Value v, int line) {
    auto node = make(Expr::Kind::kLiteral, line);
    node->value = std::move(v);
    return node;
  }

  absl::StatusOr<ExprPtr> parse_postfix(ExprPtr node) {
    while (true) {
      int line = cur().line;
      if (is_op(".")) {
        advance();
        if (cur().type == TT::kName) {
          auto attr = make(Expr::Kind::kAttr, line);
          attr->name = cur().text;
          attr->children.push_back(std::move(node));
          node = std::move(attr);
          advance();
        } else if (cur().type == TT::kInt) {
          auto index = parse_primary();
          if (!index.ok()) return index;
          auto item = make(Expr::Kind::kItem, line);
          item->children.push_back(std::move(node));
          item->children.push_back(*std::move(index));
          node = std::move(item);
        } else {
          return error(str_cat("expected an attribute name after '.' but found ", describe(cur())));
        }
      } else if (is_op("[")) {
        advance();
        auto sub = parse_subscript(std::move(node), line);
        if (!sub.ok()) return sub;
        node = *std::move(sub);
      } else if (is_op("(")) {
        auto call = parse_call(std::move(node), Expr::Kind::kCall, line);
        if (!call.ok()) return call;
        node = *std::move(call);
      } else {
        return node;
      }
    }
  }

  absl::StatusOr<ExprPtr> parse_subscript(ExprPtr target, int line) {
    std::vector<ExprPtr> parts;  // start, stop, step
    bool is_slice = false;
    auto optional_expr = [&]() -> absl::StatusOr<ExprPtr> {
      if (is_op(":") || is_op("]")) return ExprPtr();
      return parse_expression(true);
    };
    auto first = optional_expr();
    if (!first.ok()) return first;
    parts.push_back(*std::move(first));
    while (is_op(":") && parts.size() < 3) {
      is_slice = true;
      advance();
      auto e = optional_expr();
      if (!e.ok()) return e;
      parts.push_back(*std::move(e));
    }
    if (is_op(",")) return error("unsupported construct: tuple subscripts");
    auto st = expect_op("]");
    if (!st.ok()) return st;
    if (!is_slice) {
      if (!parts[0]) return error_at(line, "empty subscript '[]'");
      auto item = make(Expr::Kind::kItem, line);
      item->children.push_back(std::move(target));
      item->children.push_back(std::move(parts[0]));
      return item;
    }
    auto slice = make(Expr::Kind::kSlice, line);
    slice->children.push_back(std::move(target));
    parts.resize(3);
    for (auto& p : parts) slice->children.push_back(std::move(p));
    return slice;
  }

  // Parses `(args)` into node->children[1..] and keyword_names; children[0] is the callee/operand.
  absl::Status parse_call_args(Expr& node) {
    auto st = expect_op("(");
    if (!st.ok()) return st;
    bool first = true;
    while (!is_op(")")) {
      if (!first) {
        st = expect_op(",");
        if (!st.ok()) return st;
        if (is_op(")")) break;
      }
      first = false;
      if (is_op("*") || is_op("**")) return error("unsupported construct: '*args' / '**kwargs' in a call");
      if (cur().type == TT::kName && peek().type == TT::kOperator && peek().text == "=") {
        node.keyword_names.push_back(cur().text);
        advance();
        advance();
      } else if (!node.keyword_names.empty()) {
        return error("positional argument follows keyword argument");
      }
      auto e = parse_expression(true);
      if (!e.ok()) return e.status();
      node.children.push_back(*std::move(e));
    }
    advance();
    return absl::OkStatus();
  }

  absl::StatusOr<ExprPtr> parse_call(ExprPtr callee, Expr::Kind kind, int line) {
    auto node = make(kind, line);
    node->children.push_back(std::move(callee));
    auto st = parse_call_args(*node);
    if (!st.ok()) return st;
    return node;
  }

  absl::StatusOr<std::string> dotted_name(std::string_view what) {
    auto n = expect_name(str_cat("after '", what, "'"));
    if (!n.ok()) return n;
    std::string name = *n;
    while (is_op(".") && peek().type == TT::kName) {
      advance();
      name += "." + cur().text;
      advance();
    }
    return name;
  }

  absl::StatusOr<ExprPtr> parse_filter_expr(ExprPtr node) {
    while (true) {
      int line = cur().line;
      if (is_op("|")) {
        advance();
        auto name = dotted_name("|");
        if (!name.ok()) return name.status();
        if (!is_known_filter(*name)) return error_at(line, str_cat("unsupported filter '", *name, "'"));
        auto filter = make(Expr::Kind::kFilter, line);
        filter->name = *name;
        filter->children.push_back(std::move(node));
        if (is_op("(")) {
          auto st = parse_call_args(*filter);
          if (!st.ok()) return st;
        }
        node = std::move(filter);
      } else if (is_name("is")) {
        advance();
        bool negated = false;
        if (is_name("not")) {
          negated = true;
          advance();
        }
        auto name = dotted_name("is");
        if (!name.ok()) return name.status();
        if (!is_known_test(*name)) return error_at(line, str_cat("unsupported test '", *name, "'"));
        auto test = make(Expr::Kind::kTest, line);
        test->name = *name;
        test->negated = negated;
        test->children.push_back(std::move(node));
        if (is_op("(")) {
          auto st = parse_call_args(*test);
          if (!st.ok()) return st;
        } else if ((cur().type == TT::kName && !is_name("else") && !is_name("or") && !is_name("and")) ||
                   cur().type == TT::kString || cur().type == TT::kInt || cur().type == TT::kFloat || is_op("(") ||
                   is_op("[") || is_op("{")) {
          DepthGuard guard(depth_);
          if (depth_ > kMaxTemplateNesting) return error("expression is nested too deeply");
          auto arg = parse_primary();
          if (!arg.ok()) return arg;
          auto post = parse_postfix(*std::move(arg));
          if (!post.ok()) return post;
          test->children.push_back(*std::move(post));
        }
        node = std::move(test);
      } else if (is_op("(")) {
        auto call = parse_call(std::move(node), Expr::Kind::kCall, line);
        if (!call.ok()) return call;
        node = *std::move(call);
      } else {
        return node;
      }
    }
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

absl::StatusOr<Body> parse_template(std::string_view source) {
  auto tokens = tokenize_template(source);
  if (!tokens.ok()) return tokens.status();
  return Parser(*std::move(tokens)).run();
}

}  // namespace bm::engine
