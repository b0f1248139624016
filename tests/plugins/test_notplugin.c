/* A shared object with no vcgate entry point. */
int test_notplugin_answer(void);
int test_notplugin_answer(void) { return 42; }
