import { createApp } from 'vue'
import '@fontsource-variable/inter'
import '@fontsource-variable/jetbrains-mono'
import './style.css'
import App from './App.vue'
import { start } from './lib/store'

start()
createApp(App).mount('#app')
