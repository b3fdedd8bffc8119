int rt_dummy(void); int rt_dummy(void){return 1;}
