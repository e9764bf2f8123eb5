#include "app/agent.hpp"

int main(int argc, char** argv) { return gantry::app::Main(argc, argv); }
