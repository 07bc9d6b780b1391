#pragma once
// Syntax tree of a parsed chat template. Plain structs: the parser builds them, the interpreter walks them.
#include <memory>
#include <string>
#include <vector>

#include "engine/template/value.h"

namespace bm::engine {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,    // value
    kName,       // name
    kList,       // children
    kTuple,      // children
    kDict,       // children: key0, value0, key1, value1, ...
    kAttr,       // children[0].name
    kItem,       // children[0][children[1]]
    kSlice,      // children[0][children[1]:children[2]:children[3]] (null child = omitted)
    kCall,       // children[0](children[1..]); the last keyword_names.size() arguments are keywords
    kFilter,     // children[0] | name(children[1..]) with keyword_names as in kCall
    kTest,       // children[0] is [not] name(children[1..])
    kNeg,        // -children[0]
    kPos,        // +children[0]
    kNot,        // not children[0]
    kAnd,        // children[0] and children[1]
    kOr,         // children[0] or children[1]
    kBinary,     // children[0] op children[1]: + - * / // % ** ~
    kCompare,    // children[0] ops[0] children[1] ops[1] children[2] ... (== != < <= > >= in notin)
    kCondition,  // children[1] if children[0] else children[2] (children[2] may be null)
  };
  Kind kind;
  int line = 0;
  Value value;
  std::string name;  // variable, attribute, filter, test or binary operator
  bool negated = false;
  std::vector<ExprPtr> children;
  std::vector<std::string> keyword_names;
  std::vector<std::string> ops;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

// Assignment target: a name, `ns.attr`, or a tuple of names.
struct Target {
  std::vector<std::string> names;  // one name, or several for tuple unpacking
  std::string attribute;           // set for `ns.attr`: names[0] is the namespace
  bool is_tuple = false;
};

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // may be null
};

struct Stmt {
  enum class Kind {
    kText,      // text
    kOutput,    // {{ expr }}
    kIf,        // conditions[i] -> bodies[i]; else_body
    kFor,       // for target in expr [if filter]: bodies[0]; else_body
    kSet,       // set target = expr
    kSetBlock,  // set target %}bodies[0]{% endset
    kMacro,     // macro name(params): bodies[0]
    kBreak,
    kContinue,
    kGeneration,  // transformers' {% generation %}: renders bodies[0] unchanged
  };
  Kind kind;
  int line = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr filter;  // kFor's `if` clause
  Target target;
  std::vector<ExprPtr> conditions;
  std::vector<Body> bodies;
  Body else_body;
  std::string name;
  std::vector<MacroParam> params;
};

}  // namespace bm::engine
