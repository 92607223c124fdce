"""C names for handlers: never one that C or clang already gives a meaning.

A handler's C function is a BPF program (and its kernel name). Named like a C
library function that clang knows (`exit`, `abort`, `strlen`, ...), clang
applies that function's semantics (`exit` does not return, so the program has
no exit instruction) and libbpf may find no program of that name. Such names,
C keywords and pyprobe's and libbpf's prefixes get a trailing underscore.
"""
from __future__ import annotations

from pyprobe.dsl.refusals import C_RESERVED

# Every libc/libm function clang 14 treats as a library builtin: found by compiling
# `int NAME(void *ctx) { return 0; }` for each glibc and libm export and keeping the
# names clang warned about (-Wincompatible-library-redeclaration).
LIBRARY_BUILTINS = frozenset("""
__finite __finitef __finitel _exit abort abs acos acosf acosh acoshf acoshl acosl aligned_alloc asin asinf
asinh asinhf asinhl asinl atan atan2 atan2f atan2l atanf atanh atanhf atanhl atanl bcmp bzero cabs cabsf cabsl
cacos cacosf cacosh cacoshf cacoshl cacosl calloc carg cargf cargl casin casinf casinh casinhf casinhl casinl
catan catanf catanh catanhf catanhl catanl cbrt cbrtf cbrtl ccos ccosf ccosh ccoshf ccoshl ccosl ceil ceilf
ceill cexp cexpf cexpl cimag cimagf cimagl clog clogf clogl conj conjf conjl copysign copysignf copysignl cos
cosf cosh coshf coshl cosl cpow cpowf cpowl cproj cprojf cprojl creal crealf creall csin csinf csinh csinhf
csinhl csinl csqrt csqrtf csqrtl ctan ctanf ctanh ctanhf ctanhl ctanl erf erfc erfcf erfcl erff erfl exit exp
exp2 exp2f exp2l expf expl expm1 expm1f expm1l fabs fabsf fabsl fdim fdimf fdiml finite finitef finitel floor
floorf floorl fma fmaf fmal fmax fmaxf fmaxl fmin fminf fminl fmod fmodf fmodl free frexp frexpf frexpl hypot
hypotf hypotl ilogb ilogbf ilogbl index isalnum isalpha isblank iscntrl isdigit isgraph islower isprint
ispunct isspace isupper isxdigit labs ldexp ldexpf ldexpl lgamma lgammaf lgammal llabs llrint llrintf llrintl
llround llroundf llroundl log log10 log10f log10l log1p log1pf log1pl log2 log2f log2l logb logbf logbl logf
logl lrint lrintf lrintl lround lroundf lroundl malloc memalign memccpy memchr memcmp memcpy memmove mempcpy
memset modf modff modfl nan nanf nanl nearbyint nearbyintf nearbyintl nextafter nextafterf nextafterl
nexttoward nexttowardf nexttowardl pow powf powl printf realloc remainder remainderf remainderl remquo remquof
remquol rindex rint rintf rintl round roundf roundl scalbln scalblnf scalblnl scalbn scalbnf scalbnl scanf sin
sinf sinh sinhf sinhl sinl snprintf sprintf sqrt sqrtf sqrtl sscanf stpcpy stpncpy strcasecmp strcat strchr
strcmp strcpy strcspn strdup strerror strlen strncasecmp strncat strncmp strncpy strndup strpbrk strrchr
strspn strstr strtod strtof strtok strtol strtold strtoll strtoul strtoull strxfrm tan tanf tanh tanhf tanhl
tanl tgamma tgammaf tgammal tolower toupper trunc truncf truncl vfork vprintf vscanf vsnprintf vsprintf
vsscanf wcschr wcscmp wcslen wcsncmp wmemchr wmemcmp wmemcpy wmemmove
""".split())


def c_function_name(name: str) -> str:
    """`name`, or `name_` when C, clang or libbpf already mean something by it."""
    if name in C_RESERVED or name in LIBRARY_BUILTINS or name == "main" or name.startswith(("pp_", "bpf_", "__")):
        return name + "_"
    return name
