"""A calculator that walks the expression's AST (never `eval`): numbers, + − × ÷ // % **, unary
signs, parentheses, and a few functions (sqrt, abs, round, min, max). Anything else — names,
attribute access, calls of other functions, huge powers — is a clear error."""
from __future__ import annotations

import ast
import math
import operator

BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
FUNCTIONS = {"sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max}
MAX_EXPONENT = 1000


class CalculatorError(ValueError):
    pass


def _eval(node: ast.AST) -> float | int:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise CalculatorError(f"exponent {right} is too large (at most {MAX_EXPONENT})")
        try:
            return BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise CalculatorError("division by zero") from None
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS and not node.keywords:
        try:
            return FUNCTIONS[node.func.id](*[_eval(a) for a in node.args])
        except (TypeError, ValueError) as err:
            raise CalculatorError(f"{node.func.id}: {err}") from None
    what = ast.unparse(node) if hasattr(ast, "unparse") else type(node).__name__
    raise CalculatorError(f"unsupported expression {what!r}: use numbers, + - * / // % **, parentheses and "
                          f"{', '.join(FUNCTIONS)}")


def calculate(expression: str) -> float | int:
    """The value of an arithmetic expression, e.g. calculate("12 * (3 + 4)") == 84."""
    text = expression.replace("×", "*").replace("÷", "/").replace("^", "**").strip()
    if not text:
        raise CalculatorError("empty expression; give one such as 12 * 7")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise CalculatorError(f"cannot parse {expression!r} as arithmetic") from None
    value = _eval(tree)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    return value
