#include <criterion/criterion.h>
Test(x, one) { cr_assert_eq(1, 1); }
