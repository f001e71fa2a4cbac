void vxm_testlib_dummy(void);void vxm_testlib_dummy(void){}
